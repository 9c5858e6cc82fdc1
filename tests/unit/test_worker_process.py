"""The worker's process layer on its own: real processes, no master."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from titan_runtime.worker import process as process_module
from titan_runtime.worker.execution import SMALL_WORKSPACE, AttemptRunner
from titan_runtime.worker.process import JobProcess, memory_limited
from titan_runtime.worker.spool import MAX_LINE, Spool


def run(argv: list[str], tmp_path: Path, **kw: object) -> tuple[process_module.ProcessExit, bytes]:
    spool = Spool(tmp_path / "out.log")

    async def main() -> process_module.ProcessExit:
        proc = JobProcess(argv, tmp_path, {"PATH": "/usr/bin:/bin"}, spool, lambda: None, **kw)  # type: ignore[arg-type]
        await proc.start()
        return await proc.wait()

    result = asyncio.run(main())
    spool.close()
    return result, (tmp_path / "out.log").read_bytes() if (tmp_path / "out.log").exists() else b""


def records(raw: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for line in raw.split(b"\n")[:-1]:
        _, stream, text = line.split(b" ", 2)
        out.append((stream, text))
    return out


def test_streams_lines_and_unterminated_last_line(tmp_path: Path) -> None:
    done, raw = run(["sh", "-c", "printf 'a\\nb'; printf 'e1\\n' >&2; exit 3"], tmp_path)
    assert (done.outcome, done.exit_code, done.reason) == ("failed", 3, "exit code 3")
    # "b" was never ended with a newline: a piece (lower case), so it comes back without one.
    assert sorted(records(raw)) == sorted([(b"O", b"a"), (b"E", b"e1"), (b"o", b"b")])


def test_very_long_lines_are_split_into_pieces_that_say_the_line_goes_on(tmp_path: Path) -> None:
    done, raw = run([sys.executable, "-c", f"print('x' * {MAX_LINE * 2 + 5})"], tmp_path)
    assert done.outcome == "succeeded"
    assert [(kind, len(text)) for kind, text in records(raw)] == [
        (b"o", MAX_LINE),
        (b"o", MAX_LINE),
        (b"O", 5),
    ]


def test_a_silent_job_writes_no_spool_file(tmp_path: Path) -> None:
    done, raw = run(["true"], tmp_path)
    assert done.outcome == "succeeded" and raw == b""
    assert not (tmp_path / "out.log").exists()


@pytest.mark.parametrize("with_prlimit", [True, False])
def test_memory_limit_wrapper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_prlimit: bool) -> None:
    if not with_prlimit:
        monkeypatch.setattr(shutil, "which", lambda name: None)
    elif shutil.which("prlimit") is None:
        pytest.skip("util-linux prlimit is not installed here")
    hog = [sys.executable, "-c", "bytearray(300 * 1024 * 1024); print('fits')"]
    small = subprocess.run(memory_limited(hog, 150), capture_output=True, text=True)
    assert small.returncode != 0 and "MemoryError" in small.stderr
    large = subprocess.run(memory_limited(hog, 2000), capture_output=True, text=True)
    assert large.returncode == 0 and large.stdout == "fits\n"


@pytest.mark.parametrize(
    "layout",
    ["empty", "script link", "a few files", "a link to a directory", "a tree", "many files"],
)
def test_a_workspace_is_removed_whatever_it_holds_and_nothing_outside_it(tmp_path: Path, layout: str) -> None:
    """Small flat workspaces go inline, the rest by a thread; a link is removed, never followed."""
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("mine")
    ws = tmp_path / "ws"
    ws.mkdir()
    if layout == "script link":
        os.link(outside / "keep" / "file", ws / "job.py")
    elif layout == "a few files":
        for i in range(SMALL_WORKSPACE):
            (ws / f"f{i}").write_text("x")
    elif layout == "a link to a directory":
        (ws / "link").symlink_to(outside / "keep")
    elif layout == "a tree":
        (ws / "a" / "b").mkdir(parents=True)
        (ws / "a" / "b" / "f").write_text("x")
    elif layout == "many files":
        for i in range(SMALL_WORKSPACE * 4):
            (ws / f"f{i}").write_text("x")
    handed_to_a_thread: list[object] = []

    class RecordingExecutor(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            handed_to_a_thread.append(fn)
            return super().submit(fn, *args, **kwargs)

    async def main() -> None:
        with RecordingExecutor(1) as executor:
            asyncio.get_running_loop().set_default_executor(executor)
            await AttemptRunner._remove_workspace(ws)

    asyncio.run(main())
    assert not ws.exists()
    assert (outside / "keep" / "file").read_text() == "mine"
    assert bool(handed_to_a_thread) == (layout in ("a tree", "many files"))
