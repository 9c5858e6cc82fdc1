"""The watch stream on a real master: a snapshot, then each change once, coalesced, for any number
of viewers through one stream."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_runtime import TitanClient, TitanJob
from titan_runtime.client.errors import TitanError
from titan_runtime.client.records import WatchEvent

pytestmark = pytest.mark.integration


class Collected:
    """Events of one watch stream, read on a thread of its own, through a client of its own that
    `close()` closes (which ends the stream and the thread)."""

    def __init__(self, cluster: ProcessCluster, **kw: object) -> None:
        self.events: list[WatchEvent] = []
        self.client = TitanClient(address=cluster.address, token=cluster.token, reconnect_timeout=0)
        self._stream = self.client.watch(**kw)  # type: ignore[arg-type]
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(TitanError):
            for event in self._stream:
                self.events.append(event)

    def close(self) -> None:
        self.client.close()
        self._thread.join(10)
        assert not self._thread.is_alive()

    def job_states(self, run_id: str) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for event in self.events:
            for job in event.jobs:
                if job.run_id == run_id and (not seen.get(job.id) or seen[job.id][-1] != job.state):
                    seen.setdefault(job.id, []).append(job.state)
        return seen


def test_a_watch_opens_with_a_snapshot_then_sends_what_changed(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    client = cluster.client
    done = client.submit_dag("before", [TitanJob("a", command=["true"])])
    assert done.wait(30).state == "SUCCEEDED"
    watch = Collected(cluster)
    wait_until(lambda: watch.events, what="the snapshot")
    first = watch.events[0]
    assert first.snapshot and [r.id for r in first.runs] == [str(done)]
    assert first.runs[0].state == "SUCCEEDED" and first.runs[0].counts == {"SUCCEEDED": 1}
    assert [w.name for w in first.workers] == ["w1"] and first.jobs == [] and first.queues == {}

    gate = tmp_path / "gate"
    run = client.submit_dag(
        "live",
        [
            TitanJob("hold", command=["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done"]),
            TitanJob("after", command=["true"], parents=["hold"]),
        ],
    )
    wait_until(lambda: "RUNNING" in watch.job_states(str(run)).get("hold", []), what="hold running")
    assert watch.job_states(str(run)).get("after", ["PENDING"])[-1] == "PENDING"
    gate.touch()
    assert run.wait(30).state == "SUCCEEDED"
    wait_until(
        lambda: any(r.id == str(run) and r.state == "SUCCEEDED" for e in watch.events for r in e.runs),
        what="the run's end",
    )
    states = watch.job_states(str(run))
    assert states["hold"][-1] == "SUCCEEDED" and states["after"][-1] == "SUCCEEDED", states
    # Coalesced: far fewer events than commits, never an empty one.
    assert all(e.runs or e.jobs or e.workers or e.resync for e in watch.events[1:])
    # Workers come again every few seconds (their load changes without a commit), with the queues.
    client.submit_job(TitanJob(command=["true"], tags=["nowhere"]))
    wait_until(
        lambda: any(e.queues == {"nowhere": 1} for e in watch.events), timeout=10, what="a workers refresh"
    )


def test_a_watch_of_one_run_sees_its_jobs_only(cluster: ProcessCluster) -> None:
    client = cluster.client
    run = client.submit_dag("mine", [TitanJob(f"j{i}", command=["true"]) for i in range(5)])
    watch = Collected(cluster, run_id=str(run), kinds=["jobs", "runs"])
    other = client.submit_dag("other", [TitanJob("x", command=["true"])])
    assert run.wait(30).state == "SUCCEEDED" and other.wait(30).state == "SUCCEEDED"
    wait_until(lambda: all(s[-1] == "SUCCEEDED" for s in watch.job_states(str(run)).values())
               and len(watch.job_states(str(run))) == 5, what="every job's end")  # fmt: skip
    assert all(j.run_id == str(run) for e in watch.events for j in e.jobs)
    assert all(r.id == str(run) for e in watch.events for r in e.runs)
    assert not any(e.workers for e in watch.events)
    watch.close()


def test_bad_watch_requests_are_refused_saying_what_is_allowed(cluster: ProcessCluster) -> None:
    with pytest.raises(TitanError, match="watch kinds are jobs, runs, workers"):
        next(iter(cluster.client.watch(kinds=["everything"])))
