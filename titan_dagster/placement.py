"""Where and how a Dagster step runs on Titan: executor defaults merged with the step's op tags.

Op tags are strings chosen by users in code, so every value is checked here, before anything is
submitted, and a bad one fails with a sentence naming the step, the tag, the value and a valid
example, instead of a gRPC error from the master later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from titan_dagster.errors import TitanConfigError

TAG_REQUIREMENT = "titan/requirement"
TAG_PRIORITY = "titan/priority"
TAG_TIMEOUT = "titan/timeout"
TAG_RESOURCES = "titan/resources"

#: Titan's worker tag rule (titan_runtime.core.model.TAG_PATTERN), restated: the client is all we may import.
WORKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,63}\Z")
#: What `titan/resources` may ask for. Titan places work by slots today; cpus/memory/gpus are not scheduled yet.
RESOURCE_KEYS = ("slots",)


@dataclass(frozen=True)
class Placement:
    """What Titan needs to place one job: worker tags it requires, priority, timeout, slots."""

    requirement: tuple[str, ...] = ()
    priority: int = 1
    timeout: float | None = None
    slots: int = 1


def parse_requirement(value: Any, where: str) -> tuple[str, ...]:
    """Worker tags from "GPU", "GPU,cuda12" or ["GPU", "cuda12"]; GENERAL (any worker) adds nothing."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise TitanConfigError(
            f"{where}: requirement must be a worker tag or comma-separated tags such as 'GPU' or "
            f"'GPU,cuda12', not {value!r}"
        )
    tags: list[str] = []
    for item in items:
        tag = str(item).strip()
        if not tag or tag == "GENERAL":
            continue
        if not WORKER_TAG.match(tag):
            raise TitanConfigError(
                f"{where}: {tag!r} is not a valid Titan worker tag; use 1-64 letters, digits, "
                "'_', '-', '.' or ':' (for example 'GPU')"
            )
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


def parse_priority(value: Any, where: str) -> int:
    if isinstance(value, bool):
        value = str(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise TitanConfigError(
            f"{where}: priority must be a whole number (higher runs first), such as '10', not {value!r}"
        ) from None


def parse_timeout(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        seconds = -1.0
    if seconds < 0 or seconds != seconds:  # negative, unparsable or NaN
        raise TitanConfigError(
            f"{where}: timeout must be a number of seconds such as '600' (0 means none), not {value!r}"
        )
    return seconds or None


def parse_resources(value: Any, where: str) -> int:
    """Slots from '{"slots": 2}', 'slots=2' or a mapping."""
    if value is None or value == "":
        return 1
    data: Any = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise TitanConfigError(f"{where}: resources {value!r} is not valid JSON ({exc})") from None
        else:
            data = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, sep, amount = part.partition("=")
                if not sep:
                    raise TitanConfigError(
                        f"{where}: resources must look like 'slots=2' or '{{\"slots\": 2}}', not {value!r}"
                    )
                data[key.strip()] = amount.strip()
    if not isinstance(data, Mapping):
        raise TitanConfigError(f"{where}: resources must be a mapping such as {{'slots': 2}}, not {value!r}")
    unknown = sorted(set(data) - set(RESOURCE_KEYS))
    if unknown:
        raise TitanConfigError(
            f"{where}: unknown resource(s) {unknown}; Titan schedules by {', '.join(RESOURCE_KEYS)} "
            "(route to special hardware with titan/requirement instead, e.g. 'GPU')"
        )
    raw = data.get("slots", 1)
    try:
        slots = int(str(raw))
    except ValueError:
        slots = 0
    if slots < 1:
        raise TitanConfigError(f"{where}: slots must be a whole number of at least 1, not {raw!r}")
    return slots


def placement_for_step(step_key: str, tags: Mapping[str, Any], defaults: Placement) -> Placement:
    """The executor's defaults overridden (priority, timeout, slots) or extended (requirement) by op tags.

    Requirements add up: the executor's requirement is what every step needs (for example the tag of
    workers that have your code installed), a step's `titan/requirement` adds what it alone needs.
    """
    where = f'step "{step_key}"'
    placement = defaults
    if TAG_REQUIREMENT in tags:
        extra = parse_requirement(tags[TAG_REQUIREMENT], f"{where}, tag {TAG_REQUIREMENT}")
        merged = placement.requirement + tuple(t for t in extra if t not in placement.requirement)
        placement = replace(placement, requirement=merged)
    if TAG_PRIORITY in tags:
        placement = replace(
            placement, priority=parse_priority(tags[TAG_PRIORITY], f"{where}, tag {TAG_PRIORITY}")
        )
    if TAG_TIMEOUT in tags:
        placement = replace(
            placement, timeout=parse_timeout(tags[TAG_TIMEOUT], f"{where}, tag {TAG_TIMEOUT}")
        )
    if TAG_RESOURCES in tags:
        placement = replace(
            placement, slots=parse_resources(tags[TAG_RESOURCES], f"{where}, tag {TAG_RESOURCES}")
        )
    return placement


def parse_env(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TitanConfigError(f"{where}: env must be a mapping of variable names to values, not {value!r}")
    env: dict[str, str] = {}
    for key, val in value.items():
        name = str(key)
        if not name or "=" in name or "\0" in name:
            raise TitanConfigError(f"{where}: {name!r} is not a valid environment variable name")
        env[name] = "" if val is None else str(val)
    return env
