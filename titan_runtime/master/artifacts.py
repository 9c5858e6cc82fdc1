"""Content-addressed blobs on the master: scripts, project archives and published files.

A blob's name is its SHA-256, so a script submitted 200 times is stored and shipped once, and a
hash from the network can only ever name a file inside the blob directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from titan_runtime.core.retention import StoredFile

HASH_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}\Z")
CHUNK = 1024 * 1024


class ArtifactError(ValueError):
    pass


def check_hash(artifact_hash: str) -> str:
    if not HASH_PATTERN.match(artifact_hash):
        raise ArtifactError(f"invalid artifact hash {artifact_hash[:80]!r}: expected sha256:<64 hex digits>")
    return artifact_hash[len("sha256:") :]


class Upload:
    def __init__(self, store: ArtifactStore, limit: int) -> None:
        self._store = store
        self._limit = limit
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._fh = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise ArtifactError(
                f"artifact larger than the master's limit of {self._limit // (1024 * 1024)} MB"
            )
        self._digest.update(data)
        self._fh.write(data)

    def commit(self, expected: str) -> str:
        """Store the blob under its hash; `expected` (if given) must match what arrived."""
        self._fh.close()
        actual = "sha256:" + self._digest.hexdigest()
        if expected and expected != actual:
            self.abort()
            raise ArtifactError(f"artifact upload corrupted: announced {expected}, received {actual}")
        target = self._store.path(actual)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, target)
        return actual

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)


class ArtifactStore:
    def __init__(self, root: Path, max_bytes: int = 1024 * 1024 * 1024) -> None:
        self.root = root.resolve()
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def path(self, artifact_hash: str) -> Path:
        digest = check_hash(artifact_hash)
        return self.root / "sha256" / digest[:2] / digest[2:]

    def has(self, artifact_hash: str) -> bool:
        return self.path(artifact_hash).is_file()

    def size(self, artifact_hash: str) -> int:
        return self.path(artifact_hash).stat().st_size

    def upload(self) -> Upload:
        return Upload(self, self.max_bytes)

    def chunks(self, artifact_hash: str) -> Iterator[bytes]:
        with open(self.path(artifact_hash), "rb") as fh:
            while True:
                data = fh.read(CHUNK)
                if not data:
                    return
                yield data

    def files(self) -> Iterator[StoredFile]:
        """Every blob, its owner its hash (what names and jobs refer to it by)."""
        for folder in (self.root / "sha256").glob("??"):
            for entry in os.scandir(folder):
                if entry.is_file():
                    info = entry.stat()
                    yield StoredFile(
                        entry.path, info.st_size, info.st_mtime, f"sha256:{folder.name}{entry.name}"
                    )

    def files_of(self, hashes: set[str]) -> list[StoredFile]:
        """The blobs of these hashes that exist."""
        found = []
        for artifact_hash in hashes:
            try:
                path = self.path(artifact_hash)
                info = path.stat()
            except (ArtifactError, FileNotFoundError):
                continue
            found.append(StoredFile(str(path), info.st_size, info.st_mtime, artifact_hash))
        return found

    @staticmethod
    def remove(files: list[StoredFile]) -> None:
        for f in files:
            Path(f.path).unlink(missing_ok=True)
