"""Unpacking a project archive into a workspace, refusing anything that would land outside it."""

from __future__ import annotations

import tarfile
from pathlib import Path


class UnsafeArchive(ValueError):
    pass


def unpack(archive: Path, dest: Path) -> None:
    root = dest.resolve()
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"project archive entry {member.name!r} is not a plain file or directory")
            if target != root and root not in target.parents:
                raise UnsafeArchive(f"project archive entry {member.name!r} points outside the workspace")
            members.append(member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, members=members, filter="data")
        else:  # Python without extraction filters: the checks above are the filter
            tar.extractall(root, members=members)
