"""What the worker tells the master, and when: a batch job's start waits for the next message that
goes anyway (or START_REPORT_DELAY), so a short job costs one message; nothing else waits."""

from __future__ import annotations

import time
from pathlib import Path

from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.worker.agent import START_REPORT_DELAY, WorkerAgent, WorkerConfig, _Connection
from titan_runtime.worker.execution import Execution
from titan_runtime.worker.spool import Spool


def agent_with(tmp_path: Path, *executions: Execution) -> WorkerAgent:
    agent = WorkerAgent(WorkerConfig(master="127.0.0.1:1", token="t", name="w", work_dir=tmp_path))
    for ex in executions:
        agent.executions[ex.attempt_id] = ex
    return agent


def started(tmp_path: Path, attempt_id: str, age: float, kind: str = "batch") -> Execution:
    ex = Execution(
        assignment=pb.Assignment(attempt_id=attempt_id, spec=pb.JobSpec(id=attempt_id, kind=kind)),
        spool=Spool(tmp_path / f"{attempt_id}.log"),
        workspace=tmp_path / attempt_id,
        result_path=tmp_path / f"{attempt_id}.json",
    )
    ex.pid, ex.started_at = 4242, time.time() - age
    return ex


def conn() -> _Connection:
    return _Connection(call=None)  # type: ignore[arg-type]  # _pending never touches the call


def test_a_fresh_batch_start_is_held_back_until_its_delay(tmp_path: Path) -> None:
    ex = started(tmp_path, "a1", age=0.0)
    message, held_until = agent_with(tmp_path, ex)._pending(conn(), heartbeat=False)
    assert message is None
    assert held_until == ex.started_at + START_REPORT_DELAY
    assert not ex.started_sent


def test_a_start_goes_once_its_delay_is_over(tmp_path: Path) -> None:
    ex = started(tmp_path, "a1", age=START_REPORT_DELAY)
    message, held_until = agent_with(tmp_path, ex)._pending(conn(), heartbeat=False)
    assert message is not None and [s.attempt_id for s in message.started] == ["a1"]
    assert held_until is None and ex.started_sent


def test_a_short_job_start_and_end_go_in_one_message(tmp_path: Path) -> None:
    ex = started(tmp_path, "a1", age=0.0)
    ex.exit = pb.AttemptExit(outcome="succeeded", exit_code=0)
    message, _ = agent_with(tmp_path, ex)._pending(conn(), heartbeat=False)
    assert message is not None
    assert [s.attempt_id for s in message.started] == ["a1"]
    assert [f.attempt_id for f in message.finished] == ["a1"]


def test_held_starts_ride_along_with_anything_else_that_goes(tmp_path: Path) -> None:
    quiet = started(tmp_path, "quiet", age=0.0)
    chatty = started(tmp_path, "chatty", age=0.0)
    chatty.spool.feed(b"O", b"hello\n")
    message, held_until = agent_with(tmp_path, quiet, chatty)._pending(conn(), heartbeat=False)
    assert message is not None and held_until is None
    assert sorted(s.attempt_id for s in message.started) == ["chatty", "quiet"]
    assert [d.attempt_id for d in message.logs] == ["chatty"]


def test_a_service_start_is_never_held_back(tmp_path: Path) -> None:
    ex = started(tmp_path, "svc", age=0.0, kind="service")
    message, _ = agent_with(tmp_path, ex)._pending(conn(), heartbeat=False)
    assert message is not None and [s.attempt_id for s in message.started] == ["svc"]
