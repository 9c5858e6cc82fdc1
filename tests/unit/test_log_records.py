"""Log records back into lines: whole, byte for byte, across chunks, and resumable without loss."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from titan_runtime.client.records import LogReader, read_lines
from titan_runtime.diskspace import DiskGuard
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.worker.spool import MAX_LINE, Spool


def spool_bytes(tmp_path: Path, writes: list[tuple[bytes, bytes]], disk: DiskGuard | None = None) -> bytes:
    spool = Spool(tmp_path / "s.log", disk)
    for stream, data in writes:
        spool.feed(stream, data)
    spool.flush()
    spool.close()
    return (tmp_path / "s.log").read_bytes()


def chunks(data: bytes, size: int, attempt: int = 1) -> list[pb.LogChunk]:
    """Split at record boundaries, at most `size` bytes a chunk (as the master's reads do)."""
    out, offset = [], 0
    while offset < len(data):
        end = data.rfind(b"\n", offset, offset + size) + 1 or data.index(b"\n", offset) + 1
        out.append(pb.LogChunk(attempt=attempt, offset=offset, data=data[offset:end]))
        offset = end
    return out


def test_a_line_of_any_length_and_any_bytes_comes_back_whole(tmp_path: Path) -> None:
    long = bytes(range(256)).replace(b"\n", b"") * (3 * MAX_LINE // 255)
    invalid = b"caf\xe9 \xff\xfe"
    data = spool_bytes(
        tmp_path,
        [(b"O", long[:1000]), (b"E", b"err 1\n"), (b"O", long[1000:] + b"\n"), (b"O", invalid + b"\nlast")],
    )
    lines = list(read_lines(chunks(data, 70_000)))
    assert [(line.stream, line.data, line.terminated) for line in lines] == [
        ("stderr", b"err 1", True),
        ("stdout", long, True),
        ("stdout", invalid, True),
        ("stdout", b"last", False),
    ]
    assert lines[2] == "caf\ufffd \ufffd\ufffd" and lines[1].raw == long + b"\n" and lines[3].raw == b"last"


def test_the_reader_resumes_where_it_stopped_without_losing_a_piece(tmp_path: Path) -> None:
    data = spool_bytes(
        tmp_path, [(b"O", b"x" * (MAX_LINE * 3) + b"\n"), (b"E", b"between\n"), (b"O", b"y\n")]
    )
    parts = chunks(data, MAX_LINE // 2)
    reader = LogReader()
    seen = []
    for chunk in parts[:2]:  # the stream breaks in the middle of the long line
        seen += reader.feed(chunk)
    resumed = [c for c in chunks(data[reader.offset :], MAX_LINE // 2)]
    for chunk in resumed:
        chunk.offset += reader.offset
        seen += reader.feed(chunk)
    assert [bytes(line.data) for line in seen] == [b"x" * (MAX_LINE * 3), b"between", b"y"]


def test_titan_notes_never_join_a_job_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.log")
    spool.feed(b"E", b"partial")
    spool.flush()
    spool.note("titan: something happened")
    spool.close()
    lines = list(read_lines(chunks((tmp_path / "s.log").read_bytes(), 1000)))
    assert [(line.data, line.titan, line.terminated) for line in lines] == [
        (b"titan: something happened", True, True),
        (b"partial", False, False),
    ]


def test_a_spool_below_the_watermark_is_cut_with_a_note(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    disk = DiskGuard(tmp_path, str(free * 2))  # already below: everything after the check is cut
    spool = Spool(tmp_path / "s.log", disk)
    spool.feed(b"O", b"first\n")
    spool.feed(b"O", b"second\n")
    spool.close()
    lines = list(read_lines(chunks((tmp_path / "s.log").read_bytes(), 1000)))
    assert len(lines) == 1 and lines[0].titan and "output cut here" in lines[0]
    assert spool.cut and spool.dropped > 0


@pytest.mark.parametrize("size", ["0", "1G", "5%", "1G,5%", "512K"])
def test_min_free_settings(tmp_path: Path, size: str) -> None:
    guard = DiskGuard(tmp_path, size)
    assert guard.threshold >= 0 and (guard.threshold == 0) == (size == "0")
