"""The free-space watermark of a data dir (master) or work dir (worker).

Below it, what only adds data is refused or cut (new submissions, uploads, KV writes, job output),
so that what must be written to go on (a job's end, a worker's registration) always finds room:
the store never fails for lack of space. `--min-free` sets it as bytes ("500M", "2G") or a share of
the filesystem ("5%"); the default is the smaller of 1 GiB and 5 %, so that a small disk is not
declared full while empty. 0 turns it off.

Free space is read at every question (a statvfs costs about a microsecond): another process may
be filling the same disk (a local worker's spool, the master's logs). Writers ask before each
write of at most WRITE_SLICE bytes whether it leaves the watermark's room, so concurrent writers
can eat into the reserve by at most a slice each; a write that still meets a full disk is cut
there, never left half written.
"""

from __future__ import annotations

import os
from pathlib import Path

from titan_runtime.config import ConfigError
from titan_runtime.core.limits import parse_size

DEFAULT_MIN_FREE = "1G,5%"
#: The most a writer writes after one look at the free space.
WRITE_SLICE = 64 * 1024
#: Job output stops this far above the watermark (see DiskGuard.has_room).
OUTPUT_HEADROOM = 2 * WRITE_SLICE


class MinFreeError(ConfigError, ValueError):
    """A --min-free setting that cannot be read; the message says what to write."""


def parse_min_free(text: str) -> tuple[int | None, float | None]:
    """(bytes, percent) from "2G", "5%" or both "1G,5%" (the smaller of the two applies)."""
    size: int | None = None
    share: float | None = None
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part.endswith("%"):
            try:
                share = float(part[:-1])
            except ValueError:
                raise MinFreeError(f"{part!r} is not a percentage") from None
            if not 0 <= share < 100:
                raise MinFreeError(f"{part!r}: a share of the disk is between 0% and 100%")
        else:
            try:
                size = parse_size(part)
            except ValueError as exc:
                raise MinFreeError(str(exc)) from None
    if size is None and share is None:
        raise MinFreeError(f"{text!r}: give bytes (2G), a share (5%) or both (1G,5%)")
    return size, share


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class DiskGuard:
    """Is the disk holding `path` below the watermark? Cheap enough to ask at every write."""

    def __init__(self, path: Path, min_free: str = DEFAULT_MIN_FREE) -> None:
        self.path = path
        self.setting = min_free
        size, share = parse_min_free(min_free)
        stat = os.statvfs(path)
        total = stat.f_blocks * stat.f_frsize
        limits = [v for v in (size, None if share is None else int(total * share / 100)) if v is not None]
        self.threshold = min(limits)

    def free(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def has_room(self, size: int = 0) -> bool:
        """Whether `size` more bytes of job output leave the watermark's room free, and
        OUTPUT_HEADROOM above it: what is written after output is cut (the job's end committed,
        its audit) then fits without the disk sinking below the watermark, so the cluster still
        takes new work once the job that filled the disk has ended."""
        return self.threshold <= 0 or self.free() - size >= self.threshold + OUTPUT_HEADROOM

    @property
    def low(self) -> bool:
        """Below the watermark: what only adds data (submissions, uploads, KV writes) is refused."""
        return self.threshold > 0 and self.free() < self.threshold

    def describe(self, what: str) -> str:
        return (
            f"{what} is nearly full: {human(self.free())} free in {self.path}, below --min-free "
            f"{self.setting} ({human(self.threshold)}); free some space, or lower --min-free"
        )
