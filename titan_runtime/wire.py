"""One mapping between the wire's messages and our dataclasses, by field name.

A message and the dataclass it carries share their field names: a field of the same name is
copied (repeated fields as lists, maps as dicts, an unset `optional` scalar as None, an enum's
value, a set sorted), and each entity's mapping states only what differs from that (a nested
record, a renamed or computed field). The master maps its core records to messages with
`to_message`, the client messages to its records with `from_message`; neither lists fields.

The per-class plans are computed once, so a conversion is one pass over the fields: a job's spec
is converted at every assignment.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Callable
from typing import Any, TypeVar

D = TypeVar("D")
M = TypeVar("M")

_SCALAR, _LIST, _DICT, _OPTIONAL = range(4)
_from_plans: dict[tuple[Any, ...], list[tuple[str, Callable[[Any], Any]]]] = {}
_to_plans: dict[tuple[Any, ...], list[tuple[str, int, Any]]] = {}


def _repeated(field: Any) -> bool:
    # protobuf 6.32 brought is_repeated and deprecated label; 6.31, which dagster may pin, has label only.
    repeated = getattr(field, "is_repeated", None)
    return repeated if repeated is not None else field.label == field.LABEL_REPEATED


def _kind(field: Any) -> int | None:
    """How a message field reads out as a plain value; None for a nested message (stated by hand)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return _DICT
    if _repeated(field):
        return _LIST if field.message_type is None else None
    if field.message_type is not None:
        return None
    return _OPTIONAL if field.has_presence else _SCALAR


def from_message(cls: type[D], msg: Any, **given: Any) -> D:
    """An instance of dataclass `cls` from the message's fields of the same names; `given` sets
    the others (and overrides). A repeated field becomes the container the dataclass field is
    declared as (tuple, frozenset, else list); a field the message lacks keeps its default."""
    key = (cls, msg.DESCRIPTOR, tuple(given))
    plan = _from_plans.get(key)
    if plan is None:
        plan = _from_plans[key] = _from_plan(cls, msg.DESCRIPTOR, given)
    values = {name: read(msg) for name, read in plan}
    values.update(given)
    return cls(**values)


_CONTAINERS: dict[str, Callable[[Any], Any]] = {"tuple": tuple, "frozenset": frozenset, "set": set}


def _from_plan(cls: type, descriptor: Any, given: dict[str, Any]) -> list[tuple[str, Callable[[Any], Any]]]:
    """(field, how to read it from a message) for each dataclass field the message carries."""
    wire = descriptor.fields_by_name
    plan: list[tuple[str, Callable[[Any], Any]]] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = _kind(wire[f.name]) if f.name in wire and f.name not in given else None
        if kind is None:
            continue
        get = operator.attrgetter(f.name)
        if kind == _LIST:
            plan.append((f.name, _then(get, _CONTAINERS.get(str(f.type).partition("[")[0], list))))
        elif kind == _DICT:
            plan.append((f.name, _then(get, dict)))
        elif kind == _OPTIONAL:
            plan.append((f.name, _if_set(f.name)))
        else:
            plan.append((f.name, get))
    return plan


def _then(get: Callable[[Any], Any], convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda msg: convert(get(msg))


def _if_set(name: str) -> Callable[[Any], Any]:
    """An `optional` field: its value, or None when unset (a set 0 stays 0)."""
    return lambda msg: getattr(msg, name) if msg.HasField(name) else None


def to_message(message: type[M], *sources: Any, **given: Any) -> M:
    """A `message` whose scalar, repeated and map fields are read from the first of `sources`
    that has an attribute of that name (an enum as its value, a set sorted); `given` sets the
    nested messages and anything computed (and overrides)."""
    key = (message, tuple(given), *map(type, sources))
    plan = _to_plans.get(key)
    if plan is None:
        plan = _to_plans[key] = _to_plan(message, sources, given)
    values = {name: get(sources[index]) for name, index, get in plan}
    values.update(given)
    return message(**values)


def _to_plan(message: type, sources: tuple[Any, ...], given: dict[str, Any]) -> list[tuple[str, int, Any]]:
    plan = []
    for f in message.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        if _kind(f) is None or f.name in given:
            continue
        index = next((i for i, source in enumerate(sources) if hasattr(source, f.name)), None)
        if index is None:
            continue
        get = operator.attrgetter(f.name)
        sample = get(sources[index])
        if isinstance(sample, enum.Enum):
            get = operator.attrgetter(f.name + ".value")
        elif isinstance(sample, frozenset | set):
            get = _sorted(get)
        plan.append((f.name, index, get))
    return plan


def _sorted(get: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    return lambda source: sorted(get(source))
