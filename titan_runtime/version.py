"""The running Titan's version (the package's)."""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("titan-runtime")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"
