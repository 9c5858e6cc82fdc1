"""The master's Prometheus metrics: what they are, how the cluster's state is read for a scrape, and
the HTTP endpoint that serves them (`--metrics-port`; docs/metrics.md).

Everything lives in a registry of its own, so that several masters in one process (the tests, a
LocalCluster beside a client) never collide, and the global default registry stays the
embedding program's. prometheus_client is imported only by this module, and this module only when
metrics are asked for: a master without them pays neither the import nor a single hook.

Two kinds of numbers, kept apart on purpose:

* Events (RPCs, commits, dispatches, log bytes, attempts ending) are counted where they happen, on
  the event loop's thread, by one counter increment or histogram observation each: prometheus_client
  guards those with a lock of its own, so the scrape thread may read them at any time.
* The cluster's state (jobs by state, queues, workers and what they hold) is *computed* at scrape
  time from the live `ClusterState`, never kept up to date beside it: see `StateCollector`.

No label ever carries a job, run, attempt or worker id: the series a master exports are bounded by
its RPC methods, status codes, states and (capped, see MAX_TAG_SETS) the tag sets of queued jobs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from titan_runtime.config import ConfigError, join_host_port
from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.effects import Changes
from titan_runtime.core.states import AttemptState, JobState, WorkerState
from titan_runtime.master.interceptor import StatusInterceptor
from titan_runtime.master.logs import LogStore
from titan_runtime.master.loop import MasterLoop
from titan_runtime.tls import is_loopback

log = logging.getLogger("titan.master")

#: How long a scrape waits for the event loop to take the state's snapshot. A loop that does not
#: answer in this time is stuck or swamped: the scrape goes on without the state's gauges (and
#: counts the miss) rather than hang Prometheus's request.
SNAPSHOT_TIMEOUT = 2.0
#: Queued tag sets exported one by one; the rest are summed under OTHER_TAGS. Tags come from
#: submitters: a label per distinct set, unbounded, would let one client blow up the series count.
MAX_TAG_SETS = 50
OTHER_TAGS = "(other)"
_ENDED = frozenset(state.value for state in AttemptState if state.terminal)
#: READY to RUNNING: milliseconds when a slot is free, minutes or hours when jobs queue for one.
DISPATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: A commit is a write and an fsync: sub-millisecond without fsync, a few ms on an SSD, more on a disk.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@dataclass
class StateSnapshot:
    """What the state gauges show, counted in one pass on the event loop's thread."""

    jobs: Tally[str] = field(default_factory=Tally)  # job state -> jobs of live runs
    queued: Tally[str] = field(default_factory=Tally)  # "GPU,ssd" -> READY jobs queued with those tags
    workers: Tally[str] = field(default_factory=Tally)  # worker state -> workers
    # Of the workers that are not gone (alive, draining, or not yet back after a restart):
    slots: int = 0
    slots_used: int = 0
    cpus: int = 0
    millicpus_used: int = 0
    memory_bytes: int = 0
    memory_used_bytes: int = 0
    gpus: int = 0
    gpus_used: int = 0


def take_snapshot(state: ClusterState, max_tag_sets: int = MAX_TAG_SETS) -> StateSnapshot:
    """Count the state gauges from `state`. O(live jobs + queued jobs + workers); must run where
    nothing changes `state` meanwhile (the event loop's thread)."""
    snap = StateSnapshot()
    for run in state.runs.values():
        snap.jobs.update(job.state.value for job in run.jobs.values())
    by_tags = Tally(state.queues.depth_by_tags())
    for rank, (tags, count) in enumerate(by_tags.most_common()):
        snap.queued[",".join(sorted(tags)) if rank < max_tag_sets else OTHER_TAGS] += count
    for worker in state.workers.values():
        snap.workers[worker.state.value] += 1
        if worker.state.gone:
            continue
        snap.slots += worker.slots
        snap.slots_used += worker.used_slots
        snap.cpus += worker.cpu_count
        snap.millicpus_used += worker.used_millicpus
        snap.memory_bytes += worker.memory_bytes
        snap.memory_used_bytes += worker.used_memory_mb << 20
        snap.gpus += len(worker.gpus)
        snap.gpus_used += len(worker.gpu_holders)
    return snap


def state_metrics(snap: StateSnapshot) -> Iterator[Metric]:
    """The gauges of a snapshot. Every job and worker state is exported, 0 included: a series that
    vanished when its count fell to 0 would leave a dashboard showing its last value."""
    jobs = GaugeMetricFamily("titan_jobs", "Jobs of live runs (held in memory) by state.", labels=["state"])
    for job_state in JobState:
        jobs.add_metric([job_state.value], snap.jobs.get(job_state.value, 0))
    yield jobs
    queued = GaugeMetricFamily(
        "titan_queue_depth", "READY jobs waiting for a worker, by the tags they ask for.", labels=["tags"]
    )
    queued.add_metric([""], snap.queued.get("", 0))
    for tags, count in sorted(snap.queued.items()):
        if tags:
            queued.add_metric([tags], count)
    yield queued
    workers = GaugeMetricFamily("titan_workers", "Workers known to the master, by state.", labels=["state"])
    for worker_state in WorkerState:
        workers.add_metric([worker_state.value], snap.workers.get(worker_state.value, 0))
    yield workers
    held = "of the workers not gone (alive, draining, or awaited after a master restart)"
    for name, what, value in (
        ("titan_worker_slots", f"Slots {held}.", snap.slots),
        ("titan_worker_slots_used", f"Slots held by attempts, {held}.", snap.slots_used),
        ("titan_worker_cpus", f"CPUs offered {held}.", snap.cpus),
        ("titan_worker_cpus_used", f"CPUs held by attempts, {held}.", snap.millicpus_used / 1000),
        ("titan_worker_memory_bytes", f"Memory offered {held}.", snap.memory_bytes),
        ("titan_worker_memory_used_bytes", f"Memory held by attempts, {held}.", snap.memory_used_bytes),
        ("titan_worker_gpus", f"GPUs offered {held}.", snap.gpus),
        ("titan_worker_gpus_used", f"GPUs held by attempts, {held}.", snap.gpus_used),
    ):
        yield GaugeMetricFamily(name, what, value=value)


class StateCollector(Collector):
    """The state gauges, computed at scrape time from the live ClusterState.

    A scrape runs on the HTTP server's thread while the event loop mutates the state's dicts: a
    Python iteration over a dict that changes size raises, and counts read across a commit would
    not add up. So the collector asks the loop to count (`call_soon_threadsafe`) and waits for the
    answer (SNAPSHOT_TIMEOUT at most).

    The alternative, gauges kept current at every commit, would need each job's previous state to
    know which gauge to lower (a map the size of every live job, or a hook inside the core's
    transitions) and would cost on the hot path for numbers read every 15 seconds. Counting at
    scrape time costs nothing between scrapes and is exact by construction; its price is one pass
    over the live jobs per scrape on the loop (about 10 ms per 100,000 live jobs).
    """

    def __init__(self, state: ClusterState, loop: asyncio.AbstractEventLoop, failures: Counter) -> None:
        self._state = state
        self._loop = loop
        self._failures = failures

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        if snap is not None:
            yield from state_metrics(snap)

    def snapshot(self) -> StateSnapshot | None:
        """The state's snapshot, taken on the event loop; None when the loop did not answer."""
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:  # asked from the loop itself (a test): waiting for it would deadlock
            return take_snapshot(self._state)
        future: concurrent.futures.Future[StateSnapshot] = concurrent.futures.Future()

        def take() -> None:
            if not future.set_running_or_notify_cancel():  # the scrape gave up: skip the work
                return
            try:
                future.set_result(take_snapshot(self._state))
            except BaseException as exc:  # a bug here fails the scrape, never the loop
                future.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(take)
            return future.result(SNAPSHOT_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.warning(
                "metrics: the master's loop did not answer within %gs; state gauges left out",
                SNAPSHOT_TIMEOUT,
            )
        except RuntimeError:  # the loop is closed: the master is stopping
            pass
        except Exception:
            log.exception("metrics: counting the state failed")
        self._failures.inc()
        return None


class MasterMetrics:
    """The master's metrics, its hooks, and the HTTP endpoint serving them.

    Built before the gRPC server (its interceptor goes first in the chain), it wires itself into
    the loop's commits and the log store's appends; `serve` opens the endpoint, `stop` closes it.
    """

    def __init__(self, state: ClusterState, loop: MasterLoop, logs: LogStore, version: str) -> None:
        self._state = state
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info("titan_master", "The master's version.", registry=registry).info({"version": version})
        self.rpcs = Counter(
            "titan_rpcs_handled",
            "RPCs the master finished, by method and final status code (streams when they end).",
            ["method", "code"],
            registry=registry,
        )
        self.dispatch = Histogram(
            "titan_dispatch_latency_seconds",
            "Seconds from a job becoming READY to its attempt's process starting.",
            buckets=DISPATCH_BUCKETS,
            registry=registry,
        )
        self.commit = Histogram(
            "titan_store_commit_duration_seconds",
            "Seconds a commit of the master's store took: the batch's write and its fsync.",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )
        self.log_bytes = Counter(
            "titan_log_received_bytes",
            "Bytes of job output received from workers (a resent overlap not counted twice).",
            registry=registry,
        )
        self.attempts_ended = Counter(
            "titan_attempts_ended", "Attempts that ended, by their final state.", ["state"], registry=registry
        )
        self.snapshot_failures = Counter(
            "titan_metrics_snapshot_failures",
            "Scrapes that left out the state gauges: the master's loop did not answer in time.",
            registry=registry,
        )
        registry.register(StateCollector(state, asyncio.get_running_loop(), self.snapshot_failures))
        # Label children looked up once per (method, code), not per call.
        self._rpc_children: dict[tuple[str, str], Any] = {}
        # Attempts whose start was observed (dispatch latency), until they end: one id per
        # running attempt, so a start is counted once whichever later rows repeat it. Those a
        # restarted master restored running started under the master before: not dispatches now.
        self._started: set[str] = {
            attempt.id
            for run in state.runs.values()
            for job in run.jobs.values()
            for attempt in job.attempts
            if attempt.started_at and not attempt.state.terminal
        }
        self._http: tuple[Any, threading.Thread] | None = None
        self.address = ""
        loop.on_commit = self.commit.observe
        logs.on_received = self.log_bytes.inc

    # ------------------------------------------------------------------ hooks (the loop's thread)

    def interceptor(self) -> StatusInterceptor:
        """The outermost interceptor: it sees the final code of every call, refused ones included."""
        return StatusInterceptor(self.rpc_ended)

    def rpc_ended(self, method: str, code: str) -> None:
        child = self._rpc_children.get((method, code))
        if child is None:
            child = self._rpc_children[(method, code)] = self.rpcs.labels(method, code)
        child.inc()

    def committed(self, changes: Changes) -> None:
        """A commit's attempt rows: a first sight of a start is a dispatch (READY -> RUNNING, from
        the job's ready_at), an attempt in `ended_attempts` ended with its row's state."""
        if not changes.attempts:
            return
        started, ended = self._started, changes.ended_attempts
        for row in changes.attempts:
            attempt_id, state = row["id"], row["state"]
            if attempt_id in ended:
                if row["started_at"] and attempt_id not in started:  # started and ended in one batch
                    self._dispatched(row)
                started.discard(attempt_id)
                self.attempts_ended.labels(state).inc()
            elif state in _ENDED:  # a later row of an attempt that ended before
                started.discard(attempt_id)
            elif row["started_at"] and attempt_id not in started:
                started.add(attempt_id)
                self._dispatched(row)

    def _dispatched(self, row: dict[str, Any]) -> None:
        run = self._state.runs.get(row["run_id"])
        job = run.jobs.get(row["job_id"]) if run is not None else None
        # Skipped when the job is READY again since (retried in the same batch: ready_at is later
        # than this start), or the worker's clock (it says when its process started) runs behind.
        if job is not None and 0 < job.ready_at <= row["started_at"]:
            self.dispatch.observe(row["started_at"] - job.ready_at)

    # ------------------------------------------------------------------ the endpoint

    def serve(self, bind: str, port: int) -> str:
        """Serve /metrics on bind:port (0: a free port) on a thread of the HTTP server's own;
        returns the address it listens on. ConfigError when it cannot listen there."""
        try:
            server, thread = start_http_server(port, addr=bind, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {join_host_port(bind, port)}: {exc.strerror or exc}; "
                "choose another --metrics-port (0: any free port) or --metrics-bind"
            ) from None
        thread.name = "titan-metrics"
        self._http = (server, thread)
        host = "127.0.0.1" if bind in ("0.0.0.0", "") else ("::1" if bind == "::" else bind)
        self.address = join_host_port(host, server.server_port)
        log.info("Prometheus metrics on http://%s/metrics", self.address)
        if not is_loopback(bind):
            log.warning("the metrics endpoint has no authentication and listens beyond loopback (%s)", bind)
        return self.address

    def stop(self) -> None:
        """Close the endpoint (blocks up to half a second: the server's poll interval)."""
        if self._http is None:
            return
        server, thread = self._http
        self._http = None
        server.shutdown()
        server.server_close()
        thread.join(5)
