"""A full disk: the watermark keeps the store writable; below it, what only adds data is refused
or cut; and if the store cannot be written anyway, the master says so and exits (issue 18, 3).

The cluster lives on a 3 MB tmpfs the test mounts (and unmounts): root only.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_runtime import ResourceExhausted, TitanConnectionError, TitanError, TitanJob

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]

TEN_MB = ["python3", "-c", "import sys\nfor i in range(100_000): print('x' * 99)"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file that takes all but `leave` bytes of the disk."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            fh.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
        except OSError:
            pass
    return filler


def on(disk: Path, master_args: tuple[str, ...] = ()) -> ProcessCluster:
    """A cluster whose master data dir and worker dirs are on `disk` (its own logs are not)."""
    cluster = ProcessCluster(disk.parent / "cluster", master_args=master_args)
    cluster.root.mkdir()
    for name in ("master", "workers"):
        (disk / name).mkdir()
        (cluster.root / name).symlink_to(disk / name)
    cluster.start_master()
    return cluster


def test_a_job_printing_more_than_the_disk_holds_succeeds_with_its_output_cut(small_disk: Path) -> None:
    cluster = on(small_disk)
    try:
        cluster.add_worker("w1", slots=1)
        job = cluster.client.submit_job(TitanJob("loud", command=TEN_MB))
        record = cluster.client.wait(job, 120)
        assert record.state == "SUCCEEDED", record.reason
        lines = cluster.client.read_logs(job)
        notes = [line for line in lines if line.titan]
        assert notes and ("output cut here" in notes[0] or "missing here" in notes[0]), notes
        assert len(lines) < 100_000
        # The disk stays usable: the next job runs, the store commits, a restart finds it all.
        again = cluster.client.submit_job(TitanJob(command=["echo", "fine"]))
        assert cluster.client.wait(again, 60).state == "SUCCEEDED"
        cluster.restart_master()
        cluster._client = None
        assert cluster.client.get_job(job).state == "SUCCEEDED"
        assert cluster.client.get_job(job).attempt == 1  # not run again
    finally:
        cluster.stop()


def test_below_the_watermark_submissions_are_refused_saying_why(small_disk: Path) -> None:
    cluster = on(small_disk, ("--min-free", "1M"))
    try:
        cluster.add_worker("w1", slots=1)
        filler = fill(small_disk, 512 * 1024)
        with pytest.raises(
            ResourceExhausted, match=r"the master's disk is nearly full: .* below --min-free 1M"
        ):
            cluster.client.submit_job(TitanJob(command=["true"]))
        with pytest.raises(ResourceExhausted, match="nearly full"):
            cluster.client.store_put("k", "v")
        out = cluster.cli("submit", "--", "true")
        assert out.returncode == 1 and "nearly full" in out.stderr
        filler.unlink()
        wait_until(
            lambda: cluster.client.store_put("k", "v") is None,
            10,
            what="the watermark to see the freed space",
        )
        job = cluster.client.submit_job(TitanJob(command=["true"]))
        assert cluster.client.wait(job, 60).state == "SUCCEEDED"
    finally:
        cluster.stop()


def test_a_master_whose_store_cannot_be_written_exits_saying_why(small_disk: Path) -> None:
    cluster = on(small_disk, ("--min-free", "0"))  # no watermark: the store meets the full disk
    try:
        fill(small_disk, 0)
        big = [
            TitanJob(f"j{i}", command=["true"], env={"PAD": "p" * 2000}, requirement="NOWHERE")
            for i in range(400)
        ]
        with pytest.raises(TitanError) as refused:
            cluster.client.submit_dag("big", big)
        assert isinstance(refused.value, (TitanConnectionError, ResourceExhausted)), refused.value
        assert cluster.master is not None
        assert cluster.master.wait(30) != 0
        log = cluster.master_log()
        assert "the store could not be written" in log and "fix the cause and start it again" in log
        cluster.master = None
    finally:
        cluster.stop()


def test_a_master_on_a_disk_that_is_full_already_says_so_in_one_line(small_disk: Path) -> None:
    import sys

    fill(small_disk, 0)
    for command in ("master", "up"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "titan_runtime",
                command,
                "--port",
                "0",
                "--data-dir",
                str(small_disk / command),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert lines[-1].startswith("titan-runtime: error: ") and "disk" in lines[-1], out.stderr
        assert "Traceback" not in out.stderr
