"""The wheel a remote host installs: this very titan-runtime, packed from the installed package.

SSH bootstrap installs on the remote host exactly the code the master runs. Rather than rebuilding
from a source tree (which needs setuptools and, in isolation, the network), the installed package's
files are packed into a pure-Python wheel with the installed distribution's metadata (so pip still
resolves the dependencies). Wheels are cached by content hash under DATA_DIR/wheels: a warm cache
costs one hash of the package's files.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import titan_runtime
from titan_runtime.providers.base import ProviderError
from titan_runtime.version import __version__

DIST = "titan-runtime"
PURELIB_TAG = "py3-none-any"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _package_files() -> list[tuple[str, Path]]:
    root = Path(titan_runtime.__file__).resolve().parent
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files.append(("titan_runtime/" + path.relative_to(root).as_posix(), path))
    return files


def _metadata() -> str:
    """The installed distribution's METADATA (an egg-info's PKG-INFO, with its requirements, will do)."""
    found = list(importlib.metadata.distributions(name=DIST))
    for dist in found:
        text = dist.read_text("METADATA")
        if text:
            return text
    for dist in found:
        text = dist.read_text("PKG-INFO")
        if text:
            if "Requires-Dist:" not in text:
                head, sep, body = text.partition("\n\n")
                extra = "".join(f"Requires-Dist: {r}\n" for r in dist.requires or [])
                text = head.rstrip("\n") + "\n" + extra + (sep + body if sep else "")
            return text
    raise ProviderError(
        "titan-runtime is not installed as a distribution here (pip install -e . or pip install titan-runtime), "
        "so its wheel for remote hosts cannot be built"
    )


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel_name() -> str:
    return f"titan_runtime-{__version__}-{PURELIB_TAG}.whl"


def build_wheel(cache_dir: Path) -> Path:
    """The wheel of the running titan-runtime, from the cache when its files have not changed."""
    files = _package_files()
    metadata = _metadata()
    digest = hashlib.sha256(metadata.encode())
    contents = []
    for name, path in files:
        data = path.read_bytes()
        contents.append((name, data))
        digest.update(name.encode() + b"\0" + data)
    key = digest.hexdigest()[:16]
    target = cache_dir / key / wheel_name()
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    info = f"titan_runtime-{__version__}.dist-info"
    contents += [
        (f"{info}/METADATA", metadata.encode()),
        (
            f"{info}/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: titan-runtime {__version__}\nRoot-Is-Purelib: true\nTag: {PURELIB_TAG}\n".encode(),
        ),
        (f"{info}/entry_points.txt", b"[console_scripts]\ntitan-runtime = titan_runtime.cli:main\n"),
        (f"{info}/top_level.txt", b"titan_runtime\n"),
    ]
    record = [_record_line(name, data) for name, data in contents] + [f"{info}/RECORD,,"]
    contents.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    partial = target.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents:
            entry = zipfile.ZipInfo(name, _EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    os.replace(partial, target)
    return target


def build_wheelhouse(directory: Path, cache_dir: Path) -> list[Path]:
    """Download the wheels of titan-runtime's dependencies, at the versions installed here, into
    `directory` (with titan-runtime's own wheel), for hosts that cannot reach a package index.

    Runs pip on this machine, which needs the package index; the wheels fit this machine's Python
    version and platform.
    """
    directory.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(cache_dir)
    # pip download reuses a file of the same name already in --dest: an older build of this version
    # would be resolved in place of this one.
    for old in directory.glob("titan_runtime-*.whl"):
        old.unlink()
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    constraints = directory / ".constraints.txt"
    constraints.write_text(
        "\n".join(line for line in frozen.stdout.splitlines() if "==" in line and not line.startswith("-e"))
        + "\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--quiet",
            "--only-binary=:all:",
            "--dest",
            str(directory),
            "-c",
            str(constraints),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    constraints.unlink(missing_ok=True)
    if done.returncode != 0:
        raise ProviderError(f"pip download failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return sorted(directory.glob("*.whl"))
