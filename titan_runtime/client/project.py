"""Project folders: a directory shipped as one content-addressed archive.

The archive is deterministic (sorted entries, zeroed times and owners), so an unchanged folder
has the same hash every time and each worker fetches it once. Version control, caches and
virtual environments stay behind: they are large and machine-specific.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
from pathlib import Path

from titan_runtime.client.errors import InvalidJob

MAX_PROJECT_BYTES = 100 * 1024 * 1024
EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
    }
)
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


class ProjectTooLarge(InvalidJob):
    pass


def project_files(folder: Path, limit: int = MAX_PROJECT_BYTES) -> list[tuple[str, Path]]:
    """(archive name, path) of every file to ship, sorted; raises ProjectTooLarge past `limit` bytes."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise InvalidJob(f"project folder {folder} does not exist")
    files: list[tuple[str, Path]] = []
    total = 0
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not (here / d / "pyvenv.cfg").exists())
        for name in sorted(names):
            path = here / name
            if name.endswith(EXCLUDED_SUFFIXES) or not path.is_file():
                continue
            total += path.stat().st_size
            if total > limit:
                raise ProjectTooLarge(
                    f"project folder {folder} is over the {limit // (1024 * 1024)} MB limit "
                    f"(at {path.relative_to(folder)}); move large data out of it and publish it as an artifact"
                )
            files.append((path.relative_to(folder).as_posix(), path))
    return files


def build_archive(folder: Path, limit: int = MAX_PROJECT_BYTES) -> Path:
    """Write the folder's deterministic .tar.gz to a temporary file and return its path."""
    files = project_files(folder, limit)
    fd, name = tempfile.mkstemp(prefix="titan-project-", suffix=".tar.gz")
    with (
        os.fdopen(fd, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for arcname, path in files:
            info = tarfile.TarInfo(arcname)
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return Path(name)
