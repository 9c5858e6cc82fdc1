"""The dashboard's vendored front-end assets: listed, hashed, licensed, and nothing loaded from a CDN.

vendor.json (titan_runtime/dashboard/static/vendor/) is the one list of what is vendored; the files are
refreshed by scripts/vendor_assets.py. These tests need no network and no npm.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "titan_runtime" / "dashboard"
STATIC = DASHBOARD / "static"
TEMPLATES = DASHBOARD / "templates"
VENDOR = STATIC / "vendor"
NOT_ASSETS = {"vendor.json", "README.md"}

# A remote origin: http://, https:// or protocol-relative //host.
_REMOTE = r"""(?:https?:)?//[^\s"'<>)]"""
# Ways a page, stylesheet or script pulls in another script or stylesheet.
_REMOTE_LOADS = {
    "html": [
        re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?\s*" + _REMOTE, re.I),
        re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?\s*" + _REMOTE, re.I),
    ],
    "css": [
        re.compile(r"@import\s+(?:url\(\s*)?[\"']?\s*" + _REMOTE, re.I),
        re.compile(r"\burl\(\s*[\"']?\s*" + _REMOTE, re.I),
    ],
    "js": [
        re.compile(r"\bimport\s*\(\s*[\"'`]" + _REMOTE),
        re.compile(r"\b(?:import|export)\b[^;\"'`]*?\bfrom\s*[\"'`]" + _REMOTE),
        re.compile(r"\bimport\s*[\"'`]" + _REMOTE),
        re.compile(r"\bimportScripts\s*\(\s*[\"'`]" + _REMOTE),
        re.compile(r"\.src\s*=\s*[\"'`]" + _REMOTE),
        re.compile(r"sourceMappingURL\s*=\s*" + _REMOTE),
    ],
}
_KIND_BY_SUFFIX = {
    ".css": ("css",),
    ".js": ("js",),
    ".mjs": ("js",),
    # Templates and pages may hold <script>/<link> tags, inline scripts and inline styles.
    ".html": ("html", "css", "js"),
    ".htm": ("html", "css", "js"),
    ".jinja": ("html", "css", "js"),
    ".jinja2": ("html", "css", "js"),
    ".j2": ("html", "css", "js"),
    ".svg": ("html", "css"),
}


def _manifest() -> dict:
    return json.loads((VENDOR / "vendor.json").read_text(encoding="utf-8"))


def _entries() -> list[tuple[dict, dict]]:
    return [(pkg, entry) for pkg in _manifest()["packages"] for entry in pkg["files"]]


def _remote_loads(path: Path, default_kinds: tuple[str, ...] = ()) -> list[str]:
    kinds = _KIND_BY_SUFFIX.get(path.suffix.lower(), default_kinds)
    if not kinds:
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    return [
        m.group(0)[:120] for kind in kinds for pattern in _REMOTE_LOADS[kind] for m in pattern.finditer(text)
    ]


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_every_vendored_file_is_listed_with_its_sha256_and_vice_versa() -> None:
    on_disk = {p.relative_to(VENDOR).as_posix() for p in _files_under(VENDOR)} - NOT_ASSETS
    listed = [entry["target"] for _, entry in _entries()]
    assert len(listed) == len(set(listed)), "a target is listed twice in vendor.json"
    assert on_disk - set(listed) == set(), "files in static/vendor that vendor.json does not list"
    assert set(listed) - on_disk == set(), "files vendor.json lists that are not in static/vendor"
    for pkg, entry in _entries():
        digest = hashlib.sha256((VENDOR / entry["target"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"], (
            f"{entry['target']} ({pkg['name']}@{pkg['version']}) differs from vendor.json: "
            "run `python scripts/vendor_assets.py` rather than editing vendored files"
        )


def test_every_package_is_pinned_and_ships_its_licence() -> None:
    packages = _manifest()["packages"]
    names = [pkg["name"] for pkg in packages]
    assert len(names) == len(set(names))
    for pkg in packages:
        assert re.fullmatch(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?", pkg["version"]), pkg
        assert re.fullmatch(r"[A-Za-z0-9.+-]+", pkg["license"]), f"{pkg['name']}: licence must be an SPDX id"
        targets = {entry["target"] for entry in pkg["files"]}
        assert pkg["license_file"] in targets, f"{pkg['name']}: its licence file is not among its files"
        assert pkg["license_file"].startswith("LICENSE."), pkg["license_file"]
        text = (VENDOR / pkg["license_file"]).read_text(encoding="utf-8")
        assert "permission" in text.lower(), f"{pkg['license_file']} does not look like a licence text"
        if "bundled_in" in pkg:
            assert pkg["bundled_in"] in names, f"{pkg['name']} is bundled in an unlisted package"


def test_the_vendor_readme_names_every_package() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    for pkg in _manifest()["packages"]:
        assert f"`{pkg['name']}`" in readme, f"README.md does not describe {pkg['name']}"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.html", '<script src="https://unpkg.com/htmx.org@2"></script>'),
        ("a.html", "<script defer src='//cdn.example.org/x.js'></script>"),
        ("a.jinja", '<link rel="stylesheet" href="http://cdn.example.org/uPlot.min.css">'),
        ("a.css", '@import url("https://fonts.example.org/css?family=x");'),
        ("a.css", "body { background: url(https://example.org/bg.png) }"),
        ("a.js", 'import cytoscape from "https://esm.example.org/cytoscape";'),
        ("a.js", 'const m = await import("https://esm.example.org/m.js");'),
        ("a.js", 's.src = "https://cdn.example.org/x.js";'),
        ("a.js", "//# sourceMappingURL=https://cdn.example.org/x.js.map"),
    ],
)
def test_the_remote_load_check_catches_cdn_references(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert _remote_loads(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.html", '<a href="https://github.com/cytoscape/cytoscape.js">docs</a>'),
        ("a.html", "<script src=\"{{ url_for('static', path='vendor/htmx.min.js') }}\"></script>"),
        ("a.html", '<link rel="stylesheet" href="/static/vendor/uPlot.min.css">'),
        ("a.js", "/*! https://github.com/leeoniya/uPlot (v1.6.32) */"),
        ("a.js", "//# sourceMappingURL=cytoscape-dagre.min.js.map"),
        ("a.css", "a { background: url(../img/x.png) }"),
    ],
)
def test_the_remote_load_check_allows_local_references(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert _remote_loads(path) == []


def test_no_static_file_loads_scripts_or_styles_from_the_network() -> None:
    offenders = {
        path.relative_to(ROOT).as_posix(): found
        for path in _files_under(STATIC)
        if (found := _remote_loads(path))
    }
    assert offenders == {}, "vendor the asset (scripts/vendor_assets.py) instead of loading it remotely"


def test_no_template_loads_scripts_or_styles_from_the_network() -> None:
    if not TEMPLATES.is_dir():
        pytest.skip("titan_runtime/dashboard/templates does not exist yet")
    offenders = {
        path.relative_to(ROOT).as_posix(): found
        for path in _files_under(TEMPLATES)
        # Whatever its suffix, a template may hold tags, inline scripts and inline styles.
        if (found := _remote_loads(path, default_kinds=("html", "css", "js")))
    }
    assert offenders == {}, "templates must use the vendored assets under static/vendor, not a CDN"
