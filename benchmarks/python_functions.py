"""Parts b-e of bench_python.py: Python function tasks on Titan beside Ray, Dask and a
ProcessPoolExecutor, each with 2 workers (slots, CPUs or processes) on this machine.

b. 1,000 no-op tasks submitted at once: tasks per second (and Titan's map with chunksize=50:
   1,000 calls in 20 tasks).
c. One task after another (submit, wait for the value): milliseconds per round trip.
d. Cold start: from nothing running to the first function's value (Titan: master, worker and the
   first warm process; Ray: ray.init; Dask: a LocalCluster), and, for Titan, the first task of a
   run on a worker already up (its warm process starts).
e. A 10,000-task map: seconds, and the master's resident memory before and after.

Ray and Dask come from the `bench` extra (`pip install -e .[bench]`); a way that is not installed
is left out with a note. Ways take turns within each round (the order reversed every other round).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from _common import table

from titan_runtime.testing import ProcessCluster


def noop(x: int = 0) -> int:
    return x


# ------------------------------------------------------------------ the ways


class Way:
    name = ""

    def map(self, n: int) -> None:
        raise NotImplementedError

    def one(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Titan(Way):
    name = "titan"

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.cluster = ProcessCluster(root)
        self.cluster.start_master()
        self.cluster.add_worker("w", slots=2)
        self.client = self.cluster.client
        self.client.submit_fn(noop).result(timeout=60)  # the run's warm processes start

    @property
    def master_pid(self) -> int:
        assert self.cluster.master is not None
        return self.cluster.master.pid

    def map(self, n: int) -> None:
        for future in self.client.map(noop, range(n)):
            future.result(timeout=600)

    def one(self) -> None:
        self.client.submit_fn(noop).result(timeout=60)

    def close(self) -> None:
        self.cluster.stop()


class TitanChunked(Way):
    """The same cluster, `map(..., chunksize=CHUNK)`: a task per CHUNK calls (part b only)."""

    name = "titan, chunksize 50"
    CHUNK = 50

    def __init__(self, titan: Titan) -> None:
        self.client = titan.client

    def map(self, n: int) -> None:
        for future in self.client.map(noop, range(n), chunksize=self.CHUNK):
            future.result(timeout=600)

    def one(self) -> None:
        self.client.submit_fn(noop).result(timeout=60)


class Ray(Way):
    name = "ray"

    def __init__(self) -> None:
        import ray

        self.ray = ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.task = ray.remote(noop)
        ray.get(self.task.remote())

    def map(self, n: int) -> None:
        self.ray.get([self.task.remote(i) for i in range(n)])

    def one(self) -> None:
        self.ray.get(self.task.remote())

    def close(self) -> None:
        self.ray.shutdown()


class Dask(Way):
    name = "dask"

    def __init__(self) -> None:
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        self.client = Client(self.cluster)
        self.client.submit(noop, 0).result()

    def map(self, n: int) -> None:
        self.client.gather(self.client.map(noop, range(n), pure=False))

    def one(self) -> None:
        self.client.submit(noop, 0, pure=False).result()

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


class Pool(Way):
    name = "ProcessPoolExecutor"

    def __init__(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(2)
        self.pool.submit(noop).result()

    def map(self, n: int) -> None:
        list(self.pool.map(noop, range(n)))

    def one(self) -> None:
        self.pool.submit(noop).result()

    def close(self) -> None:
        self.pool.shutdown()


def _available(root: Path) -> tuple[list[Way], list[str]]:
    ways: list[Way] = [Titan(root / "titan")]
    notes = []
    for make in (Ray, Dask):
        try:
            ways.append(make())
        except ImportError as exc:
            notes.append(f"{make.name} left out: {exc.name} is not installed (pip install -e .[bench])")
    ways.append(Pool())
    return ways, notes


def _turns(ways: list[Way], rounds: int, measure: Callable[[Way], float]) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {w.name: [] for w in ways}
    for r in range(rounds):
        for way in ways if r % 2 == 0 else ways[::-1]:
            got[way.name].append(measure(way))
    return got


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------ parts


def part_b(ways: list[Way], rounds: int, n: int = 1000) -> None:
    titan = next(w for w in ways if isinstance(w, Titan))
    ways = [*ways, TitanChunked(titan)]
    rates = _turns(ways, rounds, lambda w: n / _timed(lambda: w.map(n)))
    ray = statistics.median(rates["ray"]) if rates.get("ray") else None
    rows = []
    for name, values in rates.items():
        med = statistics.median(values)
        target = f">= 2x ray ({med / ray:.2f}x)" if name.startswith("titan") and ray else ""
        rows.append((f"b. {n:,} no-op tasks: {name}", f"{med:,.0f}/s ({min(values):,.0f}-{max(values):,.0f})",
                     f"{ray:,.0f}/s" if ray else "-", f"{med / ray:.2f}" if ray else "-", target))  # fmt: skip
    table(f"b. throughput on 2 workers, tasks per second (medians of {rounds} rounds; baseline: ray)", rows)


def part_c(ways: list[Way], rounds: int, n: int = 200) -> None:
    def per_trip(w: Way) -> float:
        trips = [_timed(w.one) for _ in range(n)]
        return statistics.median(trips) * 1000

    trips = _turns(ways, rounds, per_trip)
    ray = statistics.median(trips["ray"]) if trips.get("ray") else None
    rows = []
    for name, values in trips.items():
        med = statistics.median(values)
        rows.append((f"c. one task after another: {name}", f"{med:.2f} ms ({min(values):.2f}-{max(values):.2f})",
                     f"{ray:.2f} ms" if ray else "-", f"{med / ray:.2f}" if ray else "-",
                     "<= 2 ms" if name == "titan" else ""))  # fmt: skip
    table(f"c. round trip, median of {n} in a row (medians of {rounds} rounds; baseline: ray)", rows)


def part_d(root: Path, rounds: int) -> None:
    """Cold starts, each in a fresh set of processes."""

    def titan_cold(i: int) -> tuple[float, float]:
        start = time.perf_counter()
        c = ProcessCluster(root / f"cold-{i}")
        (root / f"cold-{i}").mkdir(parents=True)
        try:
            c.start_master()
            c.add_worker("w", slots=2)
            up = time.perf_counter()
            c.client.submit_fn(noop).result(timeout=60)
            return time.perf_counter() - start, time.perf_counter() - up
        finally:
            c.stop()

    def other_cold(make: Callable[[], Way]) -> float:
        start = time.perf_counter()
        way = make()  # starts and runs one task
        took = time.perf_counter() - start
        way.close()
        return took

    titan_all, titan_first, others = [], [], {}
    for r in range(rounds):
        whole, first = titan_cold(r)
        titan_all.append(whole)
        titan_first.append(first)
        for make in (Ray, Dask):
            with contextlib.suppress(ImportError):
                others.setdefault(make.name, []).append(other_cold(make))
    ray = statistics.median(others["ray"]) if others.get("ray") else None
    rows = [
        ("d. first task of a run on a worker that is up", f"{statistics.median(titan_first):.2f} s", "", "", "<= 1 s"),
        ("d. titan: master + worker + first value", f"{statistics.median(titan_all):.2f} s",
         f"{ray:.2f} s" if ray else "-", f"{statistics.median(titan_all) / ray:.2f}" if ray else "-", ""),
    ]  # fmt: skip
    rows += [
        (f"d. {name}: start + first value", f"{statistics.median(v):.2f} s", "", "", "")
        for name, v in others.items()
    ]
    table(f"d. cold start (medians of {rounds}; baseline: ray.init and its first value)", rows)


def part_e(titan: Titan, n: int = 10_000) -> None:
    proc = psutil.Process(titan.master_pid)
    before = proc.memory_info().rss / 2**20
    took = _timed(lambda: titan.map(n))
    after = proc.memory_info().rss / 2**20
    table(
        f"e. a {n:,}-task map on 2 slots",
        [
            (f"e. {n:,}-task map: seconds", f"{took:.1f} s", "", "", ""),
            ("e. master RSS before -> after", f"{before:.0f} -> {after:.0f} MB", "", "", ""),
        ],
    )


@contextlib.contextmanager
def ways_up() -> Iterator[tuple[list[Way], list[str], Path]]:
    with tempfile.TemporaryDirectory(prefix="titan-bench-fn-") as tmp:
        ways, notes = _available(Path(tmp))
        try:
            yield ways, notes, Path(tmp)
        finally:
            for way in ways:
                way.close()


def run(parts: set[str], rounds: int) -> None:
    with ways_up() as (ways, notes, _root):
        for note in notes:
            print(note)
        if "b" in parts:
            part_b(ways, rounds)
        if "c" in parts:
            part_c(ways, rounds)
        if "e" in parts:
            part_e(next(w for w in ways if isinstance(w, Titan)))
    if "d" in parts:
        with tempfile.TemporaryDirectory(prefix="titan-bench-cold-") as tmp:
            part_d(Path(tmp), rounds)
    os.environ.pop("RAY_ADDRESS", None)
