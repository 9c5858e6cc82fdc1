"""A real network partition: a worker on its own host (a network namespace) loses its link."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.hosts import NetworkNamespace
from titan_runtime import TitanJob

pytestmark = pytest.mark.integration


def test_partition_requeues_after_the_lease_and_heals_cleanly(
    make_cluster, netns: NetworkNamespace, tmp_path: Path
) -> None:
    cluster = make_cluster(
        master_args=(
            "--bind",
            netns.host_ip,
            "--insecure",
            "--heartbeat-interval",
            "0.25",
            "--lease-timeout",
            "2",
        )
    )
    assert cluster.address.startswith(netns.host_ip)
    cluster.add_worker("remote", slots=1, prefix=netns.prefix)
    client = cluster.client
    gate, ran = tmp_path / "gate", tmp_path / "ran"
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            from pathlib import Path
            from titan_runtime import task
            worker = os.environ["TITAN_WORKER_NAME"]
            with open({str(ran)!r}, "a") as fh:
                fh.write(worker + "\\n")
            while worker == "remote" and not Path({str(gate)!r}).exists():
                time.sleep(0.02)
            task.set_result(worker)
            """
        )
    )
    job_id = client.submit_job(TitanJob(filename=str(script)))
    wait_until(lambda: ran.exists(), what="the job to start on the remote worker")
    netns.cut()
    healed = False
    try:
        cluster.add_worker("local", slots=1)
        record = client.wait(job_id, 60)  # requeued once the remote worker's lease ran out
        assert record.state == "SUCCEEDED"
        assert client.get_result(job_id) == "local"
        lost = record.attempts[0]
        assert lost.state == "LOST" and "no heartbeat for 2s" in lost.reason
        gate.touch()  # the partitioned attempt finishes too, with nobody to tell
        netns.heal()
        healed = True
        wait_until(
            lambda: any(w.name == "remote" and w.state == "ALIVE" for w in client.list_workers()),
            60,
            what="the remote worker to register again after the partition",
        )
    finally:
        if not healed:
            netns.heal()
    wait_until(lambda: "superseded" in cluster.master_log(), what="the stale attempt to be rejected")
    record = client.get_job(job_id)
    assert [a.state for a in record.attempts] == ["LOST", "SUCCEEDED"]
    assert client.get_result(job_id) == "local"  # the late result never committed
    assert sorted(ran.read_text().split()) == ["local", "remote"]
    # And the healed worker is a normal worker again.
    again = client.submit_job(TitanJob(command=["true"], node="remote"))
    assert client.wait(again, 30).worker_name == "remote"
