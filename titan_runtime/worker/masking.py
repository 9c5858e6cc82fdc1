"""Masking a job's secrets in its output: each value becomes `***` before the bytes are spooled,
so neither the worker's disk, nor the master's log store, nor anyone reading `logs` has it.

The output is read in pieces of whatever size the pipe gives, so a value can arrive split between
two reads (a job printing it in parts, with flushes between them). A masker holds back the end of
what it was given when that end could be the start of a value, and lets it go as soon as the next
bytes show that it is not (or when the stream ends). Only that possible start is held back: output
that cannot begin a value is passed on at once, so live logs stay live.

What it does not do, by design (docs/security.md, "Secrets"):
- values shorter than MIN_MASKED characters are not masked: masking "1" or "yes" everywhere would
  mangle every log and, by what it hides, tell the value anyway;
- encodings of a value (base64, URL-quoting, hex, the value reversed or split by other output)
  are not recognised: masking stops accidents, not a job that means to show a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"
#: Values shorter than this (in bytes) are not masked.
MIN_MASKED = 4


class Masker:
    """One stream's masker. `feed(data)` returns what can be passed on now; `flush()` the rest."""

    def __init__(self, values: Iterable[str | bytes]) -> None:
        encoded = {v.encode() if isinstance(v, str) else bytes(v) for v in values}
        self._values = sorted((v for v in encoded if len(v) >= MIN_MASKED), key=len, reverse=True)
        # Longest first: where one value contains another, the whole of the longer one goes.
        self._pattern = re.compile(b"|".join(re.escape(v) for v in self._values)) if self._values else None
        self._longest = len(self._values[0]) if self._values else 0
        starts = sorted({v[:1] for v in self._values})
        self._starts = re.compile(b"[" + b"".join(re.escape(s) for s in starts) + b"]") if starts else None
        self._held = b""

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def feed(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        buf = self._held + data
        out: list[bytes] = []
        end = 0
        for match in self._pattern.finditer(buf):
            out.append(buf[end : match.start()])
            out.append(MASK)
            end = match.end()
        hold = self._hold_from(buf, end)
        out.append(buf[end:hold])
        self._held = buf[hold:]
        return b"".join(out)

    def _hold_from(self, buf: bytes, end: int) -> int:
        """Where the longest tail of `buf` (after `end`) that begins some value starts; len(buf) if none."""
        assert self._starts is not None
        window = max(end, len(buf) - self._longest + 1)
        for found in self._starts.finditer(buf, window):
            tail = buf[found.start() :]
            if any(len(v) > len(tail) and v.startswith(tail) for v in self._values):
                return found.start()
        return len(buf)

    def flush(self) -> bytes:
        """What is held back (the stream ended, so it is no value's beginning any more)."""
        held, self._held = self._held, b""
        return held


def mask_text(text: str, values: Iterable[str]) -> str:
    """`text` with every value (of MIN_MASKED or more bytes) replaced: for Titan's own notes."""
    for value in sorted(values, key=len, reverse=True):
        if len(value.encode()) >= MIN_MASKED:
            text = text.replace(value, MASK.decode())
    return text
