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
from titan_runtime.client import RESOURCE_KEYS as QUANTITY_KEYS
from titan_runtime.client import Need, millicpus
from titan_runtime.client import parse_resources as parse_quantities

TAG_REQUIREMENT = "titan/requirement"
TAG_PRIORITY = "titan/priority"
TAG_TIMEOUT = "titan/timeout"
TAG_RESOURCES = "titan/resources"

#: Titan's worker tag rule (titan_runtime.core.model.TAG_PATTERN), restated: the client is all we may import.
WORKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,63}\Z")
#: What `titan/resources` may ask for: slots, and the quantities Titan's SDK takes as a job's
#: `resources` (cpus, memory or memory_mb, gpus), checked by the SDK's own parser.
RESOURCE_KEYS = ("slots", *QUANTITY_KEYS)


@dataclass(frozen=True)
class Placement:
    """What Titan needs to place one job: worker tags it requires, priority, timeout, slots, and
    the CPUs, memory (MiB) and GPUs it holds on its worker while it runs (0: not asked for)."""

    requirement: tuple[str, ...] = ()
    priority: int = 1
    timeout: float | None = None
    slots: int = 1
    cpus: float = 0.0
    memory_mb: int = 0
    gpus: int = 0

    def resources(self) -> dict[str, Any] | None:
        """The TitanJob's `resources`: only the quantities asked for, in their parsed form, so that
        the same step always gives the same job spec (a relaunch is recognised by its spec)."""
        asked: dict[str, Any] = {}
        if self.cpus:
            asked["cpus"] = self.cpus
        if self.memory_mb:
            asked["memory_mb"] = self.memory_mb
        if self.gpus:
            asked["gpus"] = self.gpus
        return asked or None

    def describe_resources(self) -> str:
        """What the job holds on its worker, as people write it: "2 slots, 8 GiB of memory, 1 GPU"."""
        slots = f"{self.slots} slot{'' if self.slots == 1 else 's'}"
        need = Need(millicpus(self.cpus or 0), self.memory_mb or 0, self.gpus or 0).describe()
        return f"{slots}, {need}" if need else slots

    def with_resources(self, resources: Resources) -> Placement:
        """This placement asking for `resources` instead (a tag replaces slots and quantities whole)."""
        return replace(
            self,
            slots=resources.slots,
            cpus=resources.cpus,
            memory_mb=resources.memory_mb,
            gpus=resources.gpus,
        )


@dataclass(frozen=True)
class Resources:
    """What `titan/resources` (or a `resources=` argument) asks for: slots and quantities."""

    slots: int = 1
    cpus: float = 0.0
    memory_mb: int = 0
    gpus: int = 0


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


def parse_resources(value: Any, where: str) -> Resources:
    """Slots and quantities from '{"slots": 2, "cpus": 2, "memory": "8G", "gpus": 1}',
    'slots=2,cpus=2,memory=8G,gpus=1' or a mapping.

    Slots are checked here; cpus, memory and gpus by the SDK's parser, so that a tag is refused
    exactly when a TitanJob's `resources` would be, but when the step is launched, naming it,
    rather than as a gRPC error from the master.
    """
    if value is None or value == "":
        return Resources()
    example = "'{\"slots\": 2, \"gpus\": 1}' or 'slots=2,gpus=1'"
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
                key, amount = key.strip(), amount.strip()
                if not sep or not key:
                    raise TitanConfigError(f"{where}: resources must look like {example}, not {value!r}")
                if key in data:
                    raise TitanConfigError(f"{where}: resources {value!r} gives {key} twice")
                # "512" is a whole number here as in JSON (memory_mb takes whole numbers only).
                data[key] = int(amount) if amount.isascii() and amount.isdigit() else amount
    if not isinstance(data, Mapping):
        raise TitanConfigError(f"{where}: resources must be a mapping such as {example}, not {value!r}")
    unknown = sorted(str(key) for key in data if key not in RESOURCE_KEYS)
    if unknown:
        raise TitanConfigError(
            f"{where}: unknown resource(s) {unknown}; resources are slots, cpus, memory "
            "(or memory_mb) and gpus (route to other hardware with titan/requirement, e.g. 'GPU')"
        )
    raw = data.get("slots", 1)
    try:
        slots = int(str(raw)) if not isinstance(raw, bool) else 0
    except ValueError:
        slots = 0
    if slots < 1:
        raise TitanConfigError(f"{where}: slots must be a whole number of at least 1, not {raw!r}")
    try:
        cpus, memory_mb, gpus = parse_quantities({k: v for k, v in data.items() if k != "slots"})
    except ValueError as exc:
        raise TitanConfigError(f"{where}: {exc}") from None
    return Resources(slots=slots, cpus=cpus, memory_mb=memory_mb, gpus=gpus)


def placement_for_step(step_key: str, tags: Mapping[str, Any], defaults: Placement) -> Placement:
    """The executor's defaults overridden (priority, timeout, slots and quantities) or extended
    (requirement) by op tags.

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
        placement = placement.with_resources(
            parse_resources(tags[TAG_RESOURCES], f"{where}, tag {TAG_RESOURCES}")
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
