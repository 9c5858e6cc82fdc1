"""Quantities beyond slots: the CPUs, memory and GPUs a job asks for and a worker offers.

One parser for every surface (YAML, SDK, CLI, the Dagster tag, the Airflow argument, the worker's
flags), so they all accept and refuse the same spellings. CPUs are counted in thousandths inside
(0.5 CPU is 500), so that packing never accumulates float error; memory in MiB.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The largest quantity anything may ask for or offer: past any real machine, below overflow.
MAX_CPUS = 1_000_000
MAX_MEMORY_MB = 1 << 40  # an exbibyte
MAX_GPUS = 1024

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024**2, "p": 1024**3}
_GPU_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

#: The keys a job's `resources` mapping may hold.
RESOURCE_KEYS = ("cpus", "memory", "gpus", "memory_mb")


@dataclass(frozen=True, slots=True)
class Need:
    """What one job holds on its worker beyond slots while it runs."""

    millicpus: int = 0
    memory_mb: int = 0
    gpus: int = 0

    def __bool__(self) -> bool:
        return bool(self.millicpus or self.memory_mb or self.gpus)

    def describe(self) -> str:
        parts = []
        if self.millicpus:
            parts.append(f"{format_cpus(self.millicpus)} CPU{'' if self.millicpus == 1000 else 's'}")
        if self.memory_mb:
            parts.append(f"{format_memory(self.memory_mb)} of memory")
        if self.gpus:
            parts.append(f"{self.gpus} GPU{'' if self.gpus == 1 else 's'}")
        return ", ".join(parts)


NO_NEED = Need()


def millicpus(cpus: float) -> int:
    return round(cpus * 1000)


def format_cpus(milli: int) -> str:
    return f"{milli // 1000}" if milli % 1000 == 0 else f"{milli / 1000:g}"


def format_memory(mb: int) -> str:
    """512 MiB, 8 GiB, 1.5 GiB: what people write, not a byte count."""
    for unit, size in (("TiB", 1024**2), ("GiB", 1024)):
        if mb >= size:
            value = mb / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{mb} MiB"


def parse_memory(value: Any, what: str = "memory") -> int:
    """Megabytes (MiB) from 512, "512M", "8G", "8Gi", "1.5GB", "2T". A bare number is megabytes.

    Units are powers of 1024 whatever the spelling, as in Nomad and Slurm; a value that rounds to
    less than 1 MiB is refused rather than silently made unlimited.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a size such as 512M or 8G, not {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    elif isinstance(value, str) and (match := _MEMORY.match(value)):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ValueError(
            f"{what} must be a size such as 512M, 8G or 1.5T (a bare number is MiB), not {value!r}"
        )
    mb = number * _MEMORY_UNITS[unit]
    if not math.isfinite(mb) or mb < 0 or mb > MAX_MEMORY_MB:
        raise ValueError(f"{what} must be between 0 and {MAX_MEMORY_MB:,} MiB, not {value!r}")
    if 0 < mb < 1:
        raise ValueError(f"{what} {value!r} is less than 1 MiB; give at least 1M")
    return round(mb)


def parse_cpus(value: Any, what: str = "cpus") -> float:
    """CPUs as a number: 2, 0.5, "1.5", or Kubernetes' "500m"; at most three decimals count."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise ValueError(f"{what} must be a number of CPUs such as 2 or 0.5, not {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"{what} must be a number of CPUs such as 2 or 0.5, not {value!r}")
    if not math.isfinite(number) or number < 0 or number > MAX_CPUS:
        raise ValueError(f"{what} must be between 0 and {MAX_CPUS:,}, not {value!r}")
    if number and millicpus(number) == 0:
        raise ValueError(f"{what} {value!r} is less than 0.001 CPU")
    return millicpus(number) / 1000


def parse_gpus(value: Any, what: str = "gpus") -> int:
    """A whole number of GPUs (a job gets whole devices)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_GPUS:
        raise ValueError(f"{what} must be a whole number of GPUs from 0 to {MAX_GPUS}, not {value!r}")
    return value


def parse_gpu_ids(text: str, what: str = "--gpus") -> tuple[str, ...]:
    """A worker's devices: "0,1" (indices or UUIDs as CUDA_VISIBLE_DEVICES takes them); "none": none."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return ()
    ids = tuple(part.strip() for part in text.split(","))
    for gpu in ids:
        if not _GPU_ID.match(gpu):
            raise ValueError(
                f"{what}: {gpu!r} is not a device id; give indices or UUIDs separated by commas, like 0,1, or none"
            )
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what}: a device is listed twice in {text!r}")
    if len(ids) > MAX_GPUS:
        raise ValueError(f"{what}: at most {MAX_GPUS} devices")
    return ids


def parse_resources(mapping: Mapping[str, Any], where: str = "") -> tuple[float, int, int]:
    """(cpus, memory in MiB, gpus) from a `resources` mapping: {cpus: 2, memory: 8G, gpus: 1}.

    `memory_mb` is the older spelling of `memory` (a number of MiB); giving both is refused.
    Raises ValueError saying which key is wrong and what it takes.
    """
    unknown = sorted(str(key) for key in mapping if key not in RESOURCE_KEYS)
    if unknown:
        raise ValueError(f"{where}unknown resources {unknown}; use cpus, memory (or memory_mb) and gpus")
    if "memory" in mapping and "memory_mb" in mapping:
        raise ValueError(f"{where}give resources.memory or resources.memory_mb, not both")
    cpus = parse_cpus(mapping["cpus"], f"{where}resources.cpus") if "cpus" in mapping else 0.0
    memory = 0
    if "memory" in mapping:
        memory = parse_memory(mapping["memory"], f"{where}resources.memory")
    elif "memory_mb" in mapping:
        value = mapping["memory_mb"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where}resources.memory_mb must be a whole number of megabytes")
        memory = parse_memory(value, f"{where}resources.memory_mb")
    gpus = parse_gpus(mapping["gpus"], f"{where}resources.gpus") if "gpus" in mapping else 0
    return cpus, memory, gpus
