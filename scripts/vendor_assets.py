#!/usr/bin/env python3
"""Vendor the dashboard's front-end assets from the npm registry, or check the vendored copies.

The list lives in titan_runtime/dashboard/static/vendor/vendor.json: for each npm package its exact
version, its licence (SPDX id), the files copied out of it (source path inside the package -> target
file name in the vendor directory, licence text included) and each target's sha256.

    python scripts/vendor_assets.py            # fetch every package with `npm pack`, rewrite files and hashes
    python scripts/vendor_assets.py --check    # verify the files on disk against vendor.json (no network)

To upgrade a package, edit its "version" in vendor.json and run the script without --check. Standard
library only; the refresh needs `npm` on PATH (it uses npm's own registry settings and cache).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_DIR = ROOT / "titan_runtime" / "dashboard" / "static" / "vendor"
MANIFEST_NAME = "vendor.json"
# Files of the vendor directory that are not assets and so are not listed in the manifest.
NOT_ASSETS = frozenset({MANIFEST_NAME, "README.md"})
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
SAFE_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class VendorError(Exception):
    """A problem the user has to fix; printed without a traceback."""


def say(message: str) -> None:
    print(message, flush=True)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(vendor_dir: Path) -> dict:
    path = vendor_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VendorError(f"{path} does not exist")
    except json.JSONDecodeError as exc:
        raise VendorError(f"{path} is not valid JSON: {exc}")
    validate_manifest(manifest, path)
    return manifest


def validate_manifest(manifest: dict, path: Path) -> None:
    packages = manifest.get("packages")
    if not isinstance(packages, list) or not packages:
        raise VendorError(f"{path}: 'packages' must be a non-empty list")
    targets: set[str] = set()
    for pkg in packages:
        where = f"{path}: package {pkg.get('name', '?')!r}"
        for key in ("name", "version", "license", "license_file", "files"):
            if not pkg.get(key):
                raise VendorError(f"{where} has no {key!r}")
        if not EXACT_VERSION.match(pkg["version"]):
            raise VendorError(f"{where}: version {pkg['version']!r} is not an exact version (pin x.y.z)")
        for entry in pkg["files"]:
            source, target = entry.get("source"), entry.get("target")
            if not source or not target:
                raise VendorError(f"{where}: every file needs a 'source' and a 'target'")
            if not SAFE_TARGET.match(target) or target in NOT_ASSETS:
                raise VendorError(f"{where}: target {target!r} must be a plain file name")
            if target in targets:
                raise VendorError(f"{where}: target {target!r} is listed twice")
            targets.add(target)
        if pkg["license_file"] not in {entry["target"] for entry in pkg["files"]}:
            raise VendorError(f"{where}: license_file {pkg['license_file']!r} is not one of its files")


def write_manifest(vendor_dir: Path, manifest: dict) -> None:
    path = vendor_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def check(vendor_dir: Path) -> int:
    """Verify every listed file against its sha256, and that nothing unlisted is there."""
    manifest = load_manifest(vendor_dir)
    problems = []
    listed = set()
    for pkg in manifest["packages"]:
        say(f"checking {pkg['name']}@{pkg['version']} ({pkg['license']})")
        for entry in pkg["files"]:
            listed.add(entry["target"])
            path = vendor_dir / entry["target"]
            if not path.is_file():
                problems.append(f"missing: {entry['target']} (from {pkg['name']})")
            elif sha256_of(path) != entry.get("sha256"):
                problems.append(f"sha256 mismatch: {entry['target']} (from {pkg['name']})")
    for path in sorted(vendor_dir.rglob("*")):
        rel = path.relative_to(vendor_dir).as_posix()
        if path.is_file() and rel not in listed and rel not in NOT_ASSETS:
            problems.append(f"not listed in {MANIFEST_NAME}: {rel}")
    for problem in problems:
        say(f"  {problem}")
    if problems:
        say(f"{len(problems)} problem(s); run `python scripts/vendor_assets.py` to refresh the files")
        return 1
    say(f"ok: {len(listed)} files match {MANIFEST_NAME}")
    return 0


def npm_pack(npm: str, spec: str, dest: Path) -> tuple[Path, str]:
    """`npm pack SPEC` into DEST; returns the tarball and its registry integrity string."""
    try:
        proc = subprocess.run(
            [npm, "pack", spec, "--json", "--pack-destination", str(dest)],
            cwd=dest,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        raise VendorError(f"`npm pack {spec}` did not finish in 300 s (is the npm registry reachable?)")
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip() and "complete log" not in line]
        detail = "\n  ".join(lines[-6:]) or f"exit code {proc.returncode}"
        if any(code in proc.stderr for code in ("ETARGET", "E404", "No matching version")):
            raise VendorError(f"npm has no {spec}: check the name and version in {MANIFEST_NAME}\n  {detail}")
        raise VendorError(f"`npm pack {spec}` failed:\n  {detail}")
    try:
        info = json.loads(proc.stdout)[0]
        tarball = dest / info["filename"]
    except (ValueError, LookupError, TypeError):
        raise VendorError(f"`npm pack {spec}` printed no JSON this script understands:\n{proc.stdout[:500]}")
    if not tarball.is_file():
        raise VendorError(f"`npm pack {spec}` reported {tarball.name}, which is not there")
    return tarball, info.get("integrity", "")


def read_package(tarball: Path) -> dict[str, bytes]:
    """Regular files of an npm tarball by their path inside the package (top directory stripped)."""
    files: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" not in member.name:
                continue
            rel = member.name.split("/", 1)[1]
            handle = tar.extractfile(member)
            if handle is not None:
                files[rel] = handle.read()
    return files


def refresh(vendor_dir: Path) -> int:
    """Fetch every listed package at its version, copy its files in and rewrite the hashes."""
    manifest = load_manifest(vendor_dir)
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError(
            "npm is not on PATH: install Node.js and npm (e.g. `apt-get install npm`) to refresh the "
            "assets; `--check` needs no npm"
        )
    version = subprocess.run([npm, "--version"], capture_output=True, text=True).stdout.strip()
    say(f"using npm {version or '?'} at {npm}")
    with tempfile.TemporaryDirectory(prefix="titan-vendor-") as tmp:
        staging = Path(tmp) / "staging"
        staging.mkdir()
        for index, pkg in enumerate(manifest["packages"]):
            spec = f"{pkg['name']}@{pkg['version']}"
            say(f"fetching {spec}")
            pack_dir = Path(tmp) / f"pack-{index}"
            pack_dir.mkdir()
            tarball, integrity = npm_pack(npm, spec, pack_dir)
            files = read_package(tarball)
            meta = json.loads(files.get("package.json", b"{}"))
            if meta.get("name") != pkg["name"] or meta.get("version") != pkg["version"]:
                raise VendorError(
                    f"{tarball.name} holds {meta.get('name')}@{meta.get('version')}, not {spec}"
                )
            declared = meta.get("license")
            if isinstance(declared, str) and declared != pkg["license"]:
                say(
                    f"  warning: {spec} declares licence {declared!r}, {MANIFEST_NAME} says {pkg['license']!r}"
                )
            pkg["integrity"] = integrity
            for entry in pkg["files"]:
                data = files.get(entry["source"])
                if data is None:
                    raise VendorError(
                        f"{spec} has no file {entry['source']!r} (listed for {entry['target']})"
                    )
                (staging / entry["target"]).write_bytes(data)
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                say(f"  {entry['source']} -> {entry['target']} ({len(data):,} bytes)")
        # Everything fetched: only now touch the vendor directory.
        listed = set()
        for staged in sorted(staging.iterdir()):
            listed.add(staged.name)
            shutil.copyfile(staged, vendor_dir / staged.name)
    for path in sorted(vendor_dir.iterdir()):
        if path.is_file() and path.name not in listed and path.name not in NOT_ASSETS:
            say(f"removing {path.name} (no longer listed)")
            path.unlink()
    write_manifest(vendor_dir, manifest)
    total = sum((vendor_dir / name).stat().st_size for name in listed)
    say(f"wrote {len(listed)} files ({total:,} bytes) and {MANIFEST_NAME} in {vendor_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="verify the files on disk against vendor.json (no network)"
    )
    parser.add_argument(
        "--vendor-dir", type=Path, default=VENDOR_DIR, help="the vendor directory (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        return check(args.vendor_dir) if args.check else refresh(args.vendor_dir)
    except VendorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
