"""One mapping between the wire's messages and our dataclasses, by field name.

A message and the dataclass it carries share their field names: a field of the same name is
copied (repeated fields as lists, maps as dicts, an unset `optional` scalar as None, an enum's
value, a set sorted), and each entity's mapping states only what differs from that (a nested
record, a renamed or computed field). The master maps its core records to messages with
`to_message`, the client messages to its records with `from_message`; neither lists fields.

The per-class plans are made once: reading a message takes the fields it has set in one call
(`ListFields`), and writing one is a function generated from the descriptor that reads every
field in one call: a job's spec crosses the wire at every submission and every assignment.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any, TypeVar

D = TypeVar("D")
M = TypeVar("M")

_SCALAR, _LIST, _DICT, _OPTIONAL = range(4)
_from_plans: dict[tuple[Any, ...], Callable[[Any], dict[str, Any]]] = {}
_to_plans: dict[tuple[Any, ...], Callable[..., dict[str, Any]]] = {}


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
    values = reader(cls, msg.DESCRIPTOR, *given)(msg)
    values.update(given)
    return cls(**values)


def reader(cls: type, descriptor: Any, *given: str) -> Callable[[Any], dict[str, Any]]:
    """The function `from_message` reads a message with: the keyword arguments for `cls` that the
    message's fields give, all but the fields named in `given`. Kept by a caller that converts
    one kind of message many times (a job's spec), to skip the lookup."""
    key = (cls, descriptor, given)
    read = _from_plans.get(key)
    if read is None:
        read = _from_plans[key] = _from_plan(cls, descriptor, given)
    return read


_CONTAINERS: dict[str, Callable[[Any], Any]] = {"tuple": tuple, "frozenset": frozenset, "set": set}


def _from_plan(cls: type, descriptor: Any, given: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    """One function reading the fields a message has set (`ListFields`), compiled once per class.

    A message leaves most fields at their defaults (a job's spec sets three of its forty), and
    `ListFields` hands over the set ones in one call where reading every field costs a call each:
    a job's spec is read from the wire once per job submitted. A field left unset takes the value
    reading it would give (its protobuf default), which is put in beforehand where the dataclass's
    own default differs; where they agree the dataclass makes it (a fresh dict for a map)."""
    wire = descriptor.fields_by_name
    base: dict[str, Any] = {}
    reads: dict[Any, tuple[str, Callable[[Any], Any] | None]] = {}
    fresh: list[tuple[str, Callable[[Any], Any]]] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = _kind(wire[f.name]) if f.name in wire and f.name not in given else None
        if kind is None:
            continue
        convert: Callable[[Any], Any] | None = None
        if kind == _LIST:
            convert = _CONTAINERS.get(str(f.type).partition("[")[0], list)
        elif kind == _DICT:
            convert = dict
        reads[wire[f.name]] = (f.name, convert)
        unset = None if kind == _OPTIONAL else wire[f.name].default_value
        if convert is not None:
            unset = convert(())
        own = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if own is dataclasses.MISSING or type(own) is not type(unset) or own != unset:
            if isinstance(unset, list | dict | set):
                fresh.append((f.name, convert))  # type: ignore[arg-type]  # one per record, never shared
            else:
                base[f.name] = unset

    def read(msg: Any) -> dict[str, Any]:
        values = base.copy()
        for field, value in msg.ListFields():
            how = reads.get(field)
            if how is not None:
                name, convert = how
                values[name] = value if convert is None else convert(value)
        for name, make in fresh:
            if name not in values:
                values[name] = make(())
        return values

    return read


def to_message(message: type[M], *sources: Any, **given: Any) -> M:
    """A `message` whose scalar, repeated and map fields are read from the first of `sources`
    that has an attribute of that name (an enum as its value, a set sorted); `given` sets the
    nested messages and anything computed (and overrides)."""
    key = (message, tuple(given), *map(type, sources))
    read = _to_plans.get(key)
    if read is None:
        read = _to_plans[key] = _to_plan(message, sources, given)
    values = read(*sources)
    values.update(given)
    return message(**values)


def _to_plan(message: type, sources: tuple[Any, ...], given: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """One function reading every field the message takes from `sources`, compiled once per
    (message, source types): a job's spec goes out at every assignment."""
    items = []
    for f in message.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        if _kind(f) is None or f.name in given:
            continue
        index = next((i for i, source in enumerate(sources) if hasattr(source, f.name)), None)
        if index is None:
            continue
        value = f"s{index}.{f.name}"
        sample = getattr(sources[index], f.name)
        if isinstance(sample, enum.Enum):
            value += ".value"
        elif isinstance(sample, frozenset | set):
            value = f"sorted({value})"
        items.append(f"{f.name!r}: {value}")
    params = ", ".join(f"s{i}" for i in range(len(sources)))
    source = f"def read({params}):\n    return {{" + ", ".join(items) + "}\n"
    names: dict[str, Any] = {}
    exec(compile(source, f"<wire: {message.__name__}>", "exec"), names)
    return names["read"]  # type: ignore[no-any-return]
