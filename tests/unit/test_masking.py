"""Masking secrets in a job's output: whole values, values split between reads, and what is not masked."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from titan_runtime.worker.masking import Masker, mask_text
from titan_runtime.worker.spool import Spool

SECRET = "hunter2-the-password"


def fed(masker: Masker, pieces: list[bytes]) -> bytes:
    return b"".join(masker.feed(p) for p in pieces) + masker.flush()


def test_a_value_is_masked_whole_and_when_split_at_every_point() -> None:
    text = f"user=admin password={SECRET} ok\n".encode()
    for cut in range(len(text) + 1):
        out = fed(Masker([SECRET]), [text[:cut], text[cut:]])
        assert out == b"user=admin password=*** ok\n", cut
    one_byte_at_a_time = fed(Masker([SECRET]), [bytes([b]) for b in text])
    assert one_byte_at_a_time == b"user=admin password=*** ok\n"


def test_output_that_cannot_begin_a_value_is_not_held_back() -> None:
    masker = Masker([SECRET])
    assert masker.feed(b"progress 10%\n") == b"progress 10%\n"
    assert masker.feed(b"about to print hun") == b"about to print "  # "hun" may begin it
    assert masker.feed(b"gry\n") == b"hungry\n"


def test_values_with_newlines_several_values_and_short_ones() -> None:
    multi = "line one\nline two"
    masker = Masker([multi, SECRET, "abc", ""])
    out = fed(masker, [b"a: line one\n", b"line two; b: hunter2-the-", b"password; abc\n"])
    assert out == b"a: ***; b: ***; abc\n"  # "abc" is too short to mask


def test_a_value_inside_another_masks_the_longer_one_whole() -> None:
    assert fed(Masker(["pass", "password1"]), [b"password1 pass\n"]) == b"*** ***\n"


@given(st.lists(st.binary(max_size=12), max_size=12), st.integers(0, 3))
def test_no_split_of_the_output_lets_the_value_through(noise: list[bytes], at: int) -> None:
    pieces = list(noise)
    pieces.insert(min(at, len(pieces)), SECRET.encode())
    whole = b"".join(pieces)
    # Re-cut the same bytes at arbitrary points: the value never survives.
    cuts = sorted({(len(p) * 7 + i * 3) % (len(whole) + 1) for i, p in enumerate(pieces)})
    chunks = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    out = fed(Masker([SECRET]), chunks)
    assert SECRET.encode() not in out
    assert out == whole.replace(SECRET.encode(), b"***")


def test_the_spool_masks_both_streams_and_its_own_notes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "a.log", secrets=[SECRET])
    spool.feed(b"O", b"the value is hunter2-the")
    spool.feed(b"E", b"err hunter2-the-password\n")
    spool.feed(b"O", b"-password!\nand a tail hunter")
    spool.note(f"titan: cannot start: {SECRET}")
    spool.flush()
    spool.close()
    data = (tmp_path / "a.log").read_bytes()
    assert SECRET.encode() not in data
    records = [line.split(b" ", 2)[1:] for line in data.splitlines()]
    assert [b"E", b"err ***"] in records
    assert [b"O", b"the value is ***!"] in records
    assert [b"o", b"and a tail hunter"] in records  # flushed at the end: it was no value after all
    assert [b"T", b"titan: cannot start: ***"] in records
    assert mask_text("a hunter2-the-password b", [SECRET]) == "a *** b"
