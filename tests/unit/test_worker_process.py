"""The worker's process layer on its own: real processes, no master."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from titan_runtime.worker import process as process_module
from titan_runtime.worker.process import JobProcess, memory_limited
from titan_runtime.worker.spool import MAX_LINE, Spool


def run(argv: list[str], tmp_path: Path, **kw: object) -> tuple[process_module.ProcessExit, bytes]:
    spool = Spool(tmp_path / "out.log")

    async def main() -> process_module.ProcessExit:
        proc = JobProcess(argv, tmp_path, {"PATH": "/usr/bin:/bin"}, spool, lambda: None, **kw)  # type: ignore[arg-type]
        proc.start()
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
    assert sorted(records(raw)) == sorted([(b"O", b"a"), (b"E", b"e1"), (b"O", b"b")])


def test_very_long_lines_are_split(tmp_path: Path) -> None:
    done, raw = run([sys.executable, "-c", f"print('x' * {MAX_LINE * 2 + 5})"], tmp_path)
    assert done.outcome == "succeeded"
    lengths = [len(text) for _, text in records(raw)]
    assert lengths == [MAX_LINE, MAX_LINE, 5]


def test_a_silent_job_writes_no_spool_file(tmp_path: Path) -> None:
    done, raw = run(["true"], tmp_path)
    assert done.outcome == "succeeded" and raw == b""
    assert not (tmp_path / "out.log").exists()


@pytest.mark.parametrize("with_prlimit", [True, False])
def test_memory_limit_wrapper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_prlimit: bool) -> None:
    if not with_prlimit:
        monkeypatch.setattr(process_module.shutil, "which", lambda name: None)
    elif process_module.shutil.which("prlimit") is None:
        pytest.skip("util-linux prlimit is not installed here")
    hog = [sys.executable, "-c", "bytearray(300 * 1024 * 1024); print('fits')"]
    small = subprocess.run(memory_limited(hog, 150), capture_output=True, text=True)
    assert small.returncode != 0 and "MemoryError" in small.stderr
    large = subprocess.run(memory_limited(hog, 2000), capture_output=True, text=True)
    assert large.returncode == 0 and large.stdout == "fits\n"
