"""Writing a downloaded artifact: to a temporary name, verified, then renamed into place."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from titan_runtime.client.errors import TitanError


class ArtifactWriter:
    def __init__(self, dest: Path, expected_hash: str) -> None:
        self.dest = dest
        self.expected = expected_hash
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        self._fh = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self._fh.write(data)

    def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def finish(self) -> Path:
        self._fh.close()
        actual = "sha256:" + self._digest.hexdigest()
        if actual != self.expected:
            self._tmp.unlink(missing_ok=True)
            raise TitanError(f"artifact download corrupted: expected {self.expected}, got {actual}")
        os.replace(self._tmp, self.dest)
        return self.dest
