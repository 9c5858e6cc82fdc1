"""What the master keeps and for how long: the settings, and which files go. No I/O.

Finished runs are kept `runs_days` days and at most `runs` of them (0: no count limit); a run
labelled keep=true is never collected. Logs and artifacts go by age, then oldest first while their
total is over a size. The collector (master/collector.py) applies this continuously, a small batch
at a time, so that a master never stalls to catch up with months of history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace

from titan_runtime.core.limits import parse_size

DAY = 86_400.0
GIB = 1024**3


@dataclass(frozen=True)
class Retention:
    runs_days: float = 30.0  # finished runs are deleted this many days after they ended; 0: never
    runs: int = 0  # at most this many finished runs are kept (the latest); 0: no count limit
    logs_days: float = 30.0  # logs of ended jobs are deleted this old; 0: never by age
    logs_size: int = 20 * GIB  # and the oldest while all logs together are larger; 0: no limit
    artifacts_days: float = 30.0  # artifacts nothing names or uses, this old, are deleted; 0: never
    artifacts_size: int = 20 * GIB  # and the oldest unused ones while all are larger; 0: no limit
    interval: float = 300.0  # seconds between two passes of the collector
    batch: int = 100  # runs deleted in one store transaction (the master's loop waits for it)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


DEFAULT_RETENTION = Retention()
_SIZES = ("logs_size", "artifacts_size")
_COUNTS = ("runs", "batch")


def retention_from(settings: Mapping[str, object], base: Retention = DEFAULT_RETENTION) -> Retention:
    """`base` with `settings` applied (days and seconds as numbers, sizes as "20G", counts as whole
    numbers). Raises ValueError naming the setting that is wrong and what it takes."""
    values: dict[str, float | int] = {}
    for name, raw in settings.items():
        if name not in Retention.names():
            raise ValueError(
                f"unknown retention setting {name!r}; the settings are {', '.join(Retention.names())}"
            )
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ValueError(f"retention {name}: expected a number, got {raw!r}")
        try:
            if name in _SIZES:
                value: float | int = raw if isinstance(raw, int) else parse_size(str(raw))
            elif name in _COUNTS:
                value = int(raw)
            else:
                value = float(raw)
        except ValueError:
            kind = (
                "a size like 20G" if name in _SIZES else "a whole number" if name in _COUNTS else "a number"
            )
            raise ValueError(f"retention {name}: expected {kind}, got {raw!r}") from None
        if value < 0 or (name in ("interval", "batch") and value <= 0):
            raise ValueError(
                f"retention {name}: must be {'more than' if name in ('interval', 'batch') else 'at least'} 0, got {raw!r}"
            )
        values[name] = value
    return replace(base, **values)


@dataclass(frozen=True)
class StoredFile:
    """A log or an artifact on disk; `owner` is what protects it (a run id, an artifact hash)."""

    path: str
    size: int
    mtime: float
    owner: str


def files_to_remove(
    files: Iterable[StoredFile], now: float, max_days: float, max_bytes: int, protected: set[str]
) -> list[StoredFile]:
    """Which files go: the unprotected ones older than `max_days` (0: none by age), then the oldest
    unprotected ones while the total of all files (protected ones count) is over `max_bytes`."""
    everything = sorted(files, key=lambda f: f.mtime)
    total = sum(f.size for f in everything)
    doomed: list[StoredFile] = []
    for f in everything:
        if f.owner in protected:
            continue
        too_old = max_days > 0 and now - f.mtime > max_days * DAY
        too_big = max_bytes > 0 and total > max_bytes
        if not (too_old or too_big):
            continue
        doomed.append(f)
        total -= f.size
    return doomed
