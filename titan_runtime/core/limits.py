"""What a client may ask of the master: every input from the network has a size.

Each limit is a setting of the master (`titan-runtime master --limit NAME=VALUE`, or `limits:` under
`master:` in cluster.yaml) and each refusal names the limit, the value asked for, and how to raise
it, so that a user who hits one knows what happened and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    jobs_per_run: int = 100_000  # jobs in one run, with those added later, mapped or iterated
    spec_bytes: int = 256 * KiB  # one job's spec as sent (its command, args, env, condition...)
    env_bytes: int = 128 * KiB  # one job's environment: names and values
    expression_length: int = 2000  # characters of a `when:` condition
    kv_keys_per_run: int = 10_000  # KV keys the jobs of one run may create
    artifact_bytes_per_run: int = 10 * GiB  # bytes the jobs of one run may upload

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def refusal(self, name: str, what: str) -> str:
        """The sentence a refused client reads: what it asked, the limit, and how to raise it."""
        return (
            f"{what}, over the master's limit {name}={getattr(self, name)}; raise it with "
            f"`titan-runtime master --limit {name}=N` (or master: limits: in cluster.yaml)"
        )


DEFAULT_LIMITS = Limits()


_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1024 * GiB}


def parse_size(text: str) -> int:
    """Bytes from "1048576", "512K", "500M", "2G", "1GiB" or "1GB" (powers of 1024)."""
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = raw[-1:] if raw[-1:] in _UNITS else ""
    try:
        value = float(raw[: len(raw) - len(unit)])
    except ValueError:
        raise ValueError(f"{text!r} is not a size: use bytes or a number with K, M, G or T") from None
    if value < 0:
        raise ValueError(f"{text!r}: a size cannot be negative")
    return int(value * _UNITS[unit])


def limits_from(settings: Mapping[str, object], base: Limits = DEFAULT_LIMITS) -> Limits:
    """`base` with `settings` applied: name -> a whole number, or a size ("2G") for byte limits.
    Raises ValueError naming the setting that is wrong."""
    values: dict[str, int] = {}
    for name, raw in settings.items():
        if name not in Limits.names():
            raise ValueError(f"unknown limit {name!r}; the limits are {', '.join(Limits.names())}")
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ValueError(f"limit {name}: expected a whole number or a size like 2G, got {raw!r}")
        value = raw if isinstance(raw, int) else parse_size(raw)
        if value < 1:
            raise ValueError(f"limit {name}: must be at least 1, got {raw!r}")
        values[name] = value
    return replace(base, **values)
