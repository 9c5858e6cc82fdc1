"""The master's metrics without processes: the state's snapshot, what a commit's rows count, the
interceptor's final codes (through an in-process gRPC server), the scrape's hop to the loop, and the
JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import Counter

from titan_runtime.cli.options import JsonFormatter
from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import Assign, AttemptExit, Changes, WorkerHello
from titan_runtime.core.model import JobSpec
from titan_runtime.master import metrics as metrics_module
from titan_runtime.master.interceptor import StatusInterceptor
from titan_runtime.master.logs import LogStore
from titan_runtime.master.loop import MasterLoop
from titan_runtime.master.metrics import (
    OTHER_TAGS,
    MasterMetrics,
    StateCollector,
    state_metrics,
    take_snapshot,
)
from titan_runtime.store import MemoryStore

OK = AttemptExit("succeeded", 0)


def spec(job_id: str, tags: tuple[str, ...] = (), **kw: Any) -> JobSpec:
    return JobSpec(id=job_id, command=("true",), tags=frozenset(tags), **kw)


def connect(
    state: ClusterState, worker_id: str, slots: int = 2, tags: tuple[str, ...] = (), **kw: Any
) -> None:
    state.worker_connected(
        WorkerHello(worker_id=worker_id, name=worker_id, slots=slots, tags=frozenset(tags), **kw), 0
    )


def assigns(state: ClusterState) -> list[Assign]:
    return [e for e in state.take_effects() if isinstance(e, Assign)]


@pytest.fixture
def state() -> ClusterState:
    return ClusterState(ClusterConfig(lease_timeout=1e6))


# ---------------------------------------------------------------------- the state's snapshot


def test_the_snapshot_counts_jobs_queues_workers_and_what_they_hold(state: ClusterState) -> None:
    connect(state, "w1", slots=2, cpu_count=4, memory_bytes=8 << 30, gpus=("0", "1"))
    connect(state, "w2", slots=1)
    state.submit_run("r", "r", [spec("a", cpus=1.5, gpus=1), spec("b"), spec("c"), spec("d", ("GPU",))], 0)
    snap = take_snapshot(state)
    # Three slots: three jobs placed; the GPU job waits in its own queue (no worker has the tag).
    assert snap.jobs == {"ASSIGNED": 3, "READY": 1}
    assert snap.queued == {"GPU": 1}
    assert snap.workers == {"ALIVE": 2}
    assert (snap.slots, snap.slots_used) == (3, 3)
    assert (snap.cpus, snap.memory_bytes, snap.gpus) == (4, 8 << 30, 2)
    assert (snap.millicpus_used, snap.gpus_used, snap.memory_used_bytes) == (1500, 1, 0)


def test_tag_sets_past_the_cap_are_summed_as_one(state: ClusterState) -> None:
    state.submit_run("r", "r", [spec(f"j{i}", (f"t{i}",)) for i in range(5)] + [spec("x", ("t0",))], 0)
    snap = take_snapshot(state, max_tag_sets=2)
    assert snap.queued["t0"] == 2  # the biggest first
    assert sum(snap.queued.values()) == 6 and snap.queued[OTHER_TAGS] == 3
    assert len(snap.queued) == 3


def test_every_state_is_exported_zero_included(state: ClusterState) -> None:
    families = {f.name: f for f in state_metrics(take_snapshot(state))}
    jobs = {s.labels["state"]: s.value for s in families["titan_jobs"].samples}
    assert jobs["RUNNING"] == 0 and jobs["SUCCEEDED"] == 0 and len(jobs) >= 9
    assert [s.labels for s in families["titan_queue_depth"].samples] == [{"tags": ""}]
    assert {s.labels["state"] for s in families["titan_workers"].samples} >= {"ALIVE", "DEAD"}


# ---------------------------------------------------------------------- what commits count


def with_metrics(state: ClusterState, tmp_path: Path, test: Callable[[MasterMetrics], None]) -> None:
    async def main() -> None:
        test(MasterMetrics(state, MasterLoop(state, MemoryStore()), LogStore(tmp_path / "logs"), "test"))

    asyncio.run(main())


def sample(metrics: MasterMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_start_is_one_dispatch_and_an_end_one_ended_attempt(state: ClusterState, tmp_path: Path) -> None:
    def test(metrics: MasterMetrics) -> None:
        connect(state, "w", slots=2)
        state.submit_run("r", "r", [spec("a"), spec("b")], 10.0)
        a, b = assigns(state)
        metrics.committed(state.take_changes())
        assert sample(metrics, "titan_dispatch_latency_seconds_count") == 0
        state.attempt_started("w", a.attempt_id, 100, 12.5, 12.5)
        started = state.take_changes()
        metrics.committed(started)
        assert sample(metrics, "titan_dispatch_latency_seconds_count") == 1
        assert sample(metrics, "titan_dispatch_latency_seconds_sum") == pytest.approx(2.5)
        metrics.committed(started)  # its row again (a service's health, say): no second dispatch
        assert sample(metrics, "titan_dispatch_latency_seconds_count") == 1
        # b starts and ends within one commit: one dispatch, one end
        state.attempt_started("w", b.attempt_id, 101, 11.0, 11.0)
        state.attempt_finished("w", b.attempt_id, OK, 11.5)
        state.attempt_finished("w", a.attempt_id, AttemptExit("failed", 1), 13.0)
        ended = state.take_changes()
        metrics.committed(ended)
        assert sample(metrics, "titan_dispatch_latency_seconds_count") == 2
        assert sample(metrics, "titan_dispatch_latency_seconds_sum") == pytest.approx(3.5)
        assert sample(metrics, "titan_attempts_ended_total", state="SUCCEEDED") == 1
        assert sample(metrics, "titan_attempts_ended_total", state="FAILED") == 1
        metrics.committed(Changes(attempts=ended.attempts))  # later rows of ended attempts: nothing
        assert sample(metrics, "titan_dispatch_latency_seconds_count") == 2
        assert metrics._started == set()  # nothing kept once attempts end

    with_metrics(state, tmp_path, test)


def test_attempts_running_before_the_metrics_began_are_no_dispatches(
    state: ClusterState, tmp_path: Path
) -> None:
    connect(state, "w", slots=1)
    state.submit_run("r", "r", [spec("a")], 10.0)
    (a,) = assigns(state)
    state.attempt_started("w", a.attempt_id, 100, 12.0, 12.0)
    state.take_changes()  # committed by the master before (a restart restores it running)

    def test(metrics: MasterMetrics) -> None:
        state.attempt_finished("w", a.attempt_id, OK, 20.0)
        metrics.committed(state.take_changes())
        assert sample(metrics, "titan_dispatch_latency_seconds_count") == 0
        assert sample(metrics, "titan_attempts_ended_total", state="SUCCEEDED") == 1

    with_metrics(state, tmp_path, test)


def test_commits_and_log_bytes_reach_their_metrics(state: ClusterState, tmp_path: Path) -> None:
    async def main() -> None:
        loop = MasterLoop(state, MemoryStore())
        logs = LogStore(tmp_path / "logs")
        metrics = MasterMetrics(state, loop, logs, "test")
        loop.start(lambda effects, changes: asyncio.sleep(0))
        try:
            await loop.call(lambda now: state.submit_run("r", "r", [spec("a")], now))
        finally:
            await loop.stop()
        assert sample(metrics, "titan_store_commit_duration_seconds_count") >= 1
        path = logs.path("r", "a", 1)
        logs.append("at-1", path, 0, b"1 O hello\n")
        logs.append("at-1", path, 0, b"1 O hello\n2 O more\n")  # a resend: only the new bytes count
        logs.close_all()
        assert sample(metrics, "titan_log_received_bytes_total") == len(b"1 O hello\n2 O more\n")

    asyncio.run(main())


# ---------------------------------------------------------------------- the scrape's hop to the loop


def test_a_scrape_from_another_thread_counts_on_the_loop(state: ClusterState) -> None:
    connect(state, "w", slots=3)
    failures = Counter("failures", "", registry=None)

    async def main() -> None:
        collector = StateCollector(state, asyncio.get_running_loop(), failures)
        snap = await asyncio.to_thread(collector.snapshot)
        assert snap is not None and snap.slots == 3
        assert collector.snapshot() is not None  # asked on the loop itself: counted there, no wait

    asyncio.run(main())
    assert failures._value.get() == 0


def test_a_stuck_loop_leaves_the_state_out_of_the_scrape(
    state: ClusterState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "SNAPSHOT_TIMEOUT", 0.05)
    failures = Counter("failures", "", registry=None)
    found: list[object] = []

    async def main() -> None:
        collector = StateCollector(state, asyncio.get_running_loop(), failures)
        scraper = threading.Thread(target=lambda: found.append(collector.snapshot()))
        scraper.start()
        scraper.join(10)  # blocks the loop's thread: the loop cannot answer

    asyncio.run(main())
    assert found == [None]
    assert failures._value.get() == 1


# ---------------------------------------------------------------------- RPCs' final codes


async def _ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"ok"


async def _not_found(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    return b""


async def _raises(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise ValueError("a bug")


async def _sets_code(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    return b""


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for _ in range(3):
        yield b"x"


async def _stream_refused(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"x"
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")


async def _endless(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"x"
    await asyncio.Event().wait()  # until the client cancels


async def _echo_all(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for item in requests:
        yield item


def test_every_call_is_counted_with_the_code_it_ended_with() -> None:
    ended: list[tuple[str, str]] = []

    async def main() -> None:
        arrived = asyncio.Event()

        def record(method: str, code: str) -> None:
            ended.append((method, code))
            arrived.set()

        server = grpc.aio.server(interceptors=[StatusInterceptor(record)])
        handlers = {
            "Ok": grpc.unary_unary_rpc_method_handler(_ok),
            "NotFound": grpc.unary_unary_rpc_method_handler(_not_found),
            "Raises": grpc.unary_unary_rpc_method_handler(_raises),
            "SetsCode": grpc.unary_unary_rpc_method_handler(_sets_code),
            "Stream": grpc.unary_stream_rpc_method_handler(_stream),
            "StreamRefused": grpc.unary_stream_rpc_method_handler(_stream_refused),
            "Endless": grpc.unary_stream_rpc_method_handler(_endless),
            "Echo": grpc.stream_stream_rpc_method_handler(_echo_all),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.S", handlers)])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

                async def until_counted(call: Callable[[], Awaitable[Any]], count: int) -> None:
                    try:
                        await call()
                    except grpc.aio.AioRpcError:
                        pass
                    while len(ended) < count:  # the server may finish after the client has its answer
                        arrived.clear()
                        await asyncio.wait_for(arrived.wait(), 10)

                for n, name in enumerate(["Ok", "NotFound", "Raises", "SetsCode"], 1):
                    await until_counted(lambda name=name: channel.unary_unary(f"/test.S/{name}")(b""), n)

                async def drain(name: str) -> None:
                    async for _ in channel.unary_stream(f"/test.S/{name}")(b""):
                        pass

                await until_counted(lambda: drain("Stream"), 5)
                await until_counted(lambda: drain("StreamRefused"), 6)

                async def cancel_endless() -> None:
                    call = channel.unary_stream("/test.S/Endless")(b"")
                    await call.read()
                    call.cancel()

                await until_counted(cancel_endless, 7)

                async def echo() -> None:
                    call = channel.stream_stream("/test.S/Echo")(iter([b"a", b"b"]))
                    assert [item async for item in call] == [b"a", b"b"]

                await until_counted(echo, 8)
        finally:
            await server.stop(None)

    asyncio.run(main())
    assert ended == [
        ("Ok", "OK"),
        ("NotFound", "NOT_FOUND"),
        ("Raises", "UNKNOWN"),
        ("SetsCode", "FAILED_PRECONDITION"),
        ("Stream", "OK"),
        ("StreamRefused", "PERMISSION_DENIED"),
        ("Endless", "CANCELLED"),
        ("Echo", "OK"),
    ]


# ---------------------------------------------------------------------- JSON log lines


def test_a_json_log_line_is_one_object_with_time_level_logger_message_and_exception() -> None:
    try:
        raise RuntimeError("it broke\non two lines")
    except RuntimeError:
        record = logging.LogRecord(
            "titan.master", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "titan.master" and entry["message"] == "failed x"
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert "RuntimeError: it broke\non two lines" in entry["exception"]
    plain = json.loads(JsonFormatter().format(logging.LogRecord("t", logging.INFO, "", 1, "hi", None, None)))
    assert set(plain) == {"time", "level", "logger", "message"}


# ---------------------------------------------------------------------- the docs and the dashboard

ROOT = Path(__file__).resolve().parents[2]


def exported_names(state: ClusterState, tmp_path: Path) -> set[str]:
    """The names a scrape shows: a counter's with its _total, an info's with _info, a histogram's
    without its suffixes."""
    names: set[str] = set()

    def test(metrics: MasterMetrics) -> None:
        for family in metrics.registry.collect():
            if family.name.startswith("titan_"):
                names.add(family.name + {"counter": "_total", "info": "_info"}.get(family.type, ""))

    with_metrics(state, tmp_path, test)
    return names


def test_the_docs_name_every_metric_and_the_dashboard_only_real_ones(
    state: ClusterState, tmp_path: Path
) -> None:
    exported = exported_names(state, tmp_path)
    assert {"titan_jobs", "titan_rpcs_handled_total", "titan_dispatch_latency_seconds"} <= exported
    docs = (ROOT / "docs" / "metrics.md").read_text()
    assert [name for name in sorted(exported) if f"`{name}`" not in docs] == []
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"titan_[a-z_]+", e)}
    assert used - exported == set()
    assert {"titan_jobs", "titan_queue_depth", "titan_workers", "titan_store_commit_duration_seconds"} <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
