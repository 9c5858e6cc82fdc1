"""Unpacking a project archive into a workspace, refusing anything that would land outside it, and
anything bigger than the worker lets a project be: a 1 MB archive can hold a gigabyte of zeros."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from titan_runtime.core.limits import GiB
from titan_runtime.diskspace import human


class UnsafeArchive(ValueError):
    pass


@dataclass(frozen=True)
class ProjectLimits:
    """What one project may unpack to on this worker (`--max-project-size`, `--max-project-files`)."""

    max_bytes: int = 10 * GiB
    max_files: int = 100_000


def unpack(archive: Path, dest: Path, limits: ProjectLimits | None = None) -> None:
    limits = limits or ProjectLimits()
    root = dest.resolve()
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        total = 0
        for member in tar:  # read lazily: a bomb is refused at the first header that exceeds
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"project archive entry {member.name!r} is not a plain file or directory")
            if target != root and root not in target.parents:
                raise UnsafeArchive(f"project archive entry {member.name!r} points outside the workspace")
            total += member.size
            if total > limits.max_bytes:
                raise UnsafeArchive(
                    f"the project unpacks to more than {human(limits.max_bytes)}, this worker's limit "
                    "(worker --max-project-size); ship less, or raise it"
                )
            members.append(member)
            if len(members) > limits.max_files:
                raise UnsafeArchive(
                    f"the project has more than {limits.max_files:,} files, this worker's limit "
                    "(worker --max-project-files); ship less, or raise it"
                )
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, members=members, filter="data")
        else:  # Python without extraction filters: the checks above are the filter
            tar.extractall(root, members=members)
