"""Shared by the benchmark scripts: a real cluster in a temp dir, timing, and the result table."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from titan_runtime.testing import ProcessCluster


@contextlib.contextmanager
def cluster(
    workers: Sequence[tuple[str, int]] = (("w1", 2),),
    store: str = "sqlite",
    master_args: Sequence[str] = (),
) -> Iterator[ProcessCluster]:
    """A master process and worker processes (name, slots), stopped by pid at the end."""
    with tempfile.TemporaryDirectory(prefix="titan-bench-") as tmp:
        c = ProcessCluster(Path(tmp), store=store, master_args=master_args)
        try:
            c.start_master()
            for name, slots in workers:
                c.add_worker(name, slots=slots)
            yield c
        finally:
            c.stop()


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def table(title: str, rows: list[tuple[str, str, str, str, str]]) -> None:
    """Print: what was measured, Titan, the same-run baseline, the ratio, and the target."""
    headers = ("measure", "titan", "baseline", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(5)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"\n{title}")
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
