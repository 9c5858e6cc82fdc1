"""The worker's artifact cache: each content hash is fetched from the master once, then reused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

_HASH = re.compile(r"^sha256:([0-9a-f]{64})\Z")

Fetch = Callable[[str], AsyncIterator[bytes]]


class ArtifactCache:
    def __init__(self, root: Path, fetch: Fetch) -> None:
        self.root = root
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fetch = fetch
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0  # how many times the master was asked (for tests and stats)

    def path(self, artifact_hash: str) -> Path:
        match = _HASH.match(artifact_hash)
        if match is None:
            raise ValueError(f"invalid artifact hash {artifact_hash[:80]!r}")
        return self.root / match.group(1)

    async def get(self, artifact_hash: str) -> Path:
        """The local path of the artifact, fetching and verifying it on first use."""
        path = self.path(artifact_hash)
        if path.exists():
            return path
        lock = self._locks.setdefault(artifact_hash, asyncio.Lock())
        async with lock:
            if path.exists():
                return path
            self.fetches += 1
            digest = hashlib.sha256()
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".fetch-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    async for data in self._fetch(artifact_hash):
                        digest.update(data)
                        fh.write(data)
                if "sha256:" + digest.hexdigest() != artifact_hash:
                    raise OSError(f"artifact {artifact_hash} arrived corrupted")
                os.chmod(tmp, 0o755)  # scripts without a known suffix are executed directly
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        self._locks.pop(artifact_hash, None)
        return path
