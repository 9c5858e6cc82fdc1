"""Autoscaled pools that declare quantities, with real master and worker processes: a job asking for
a GPU starts a worker of the pool whose workers will have GPUs (fake device ids here), which runs it
with its device in CUDA_VISIBLE_DEVICES; a job asking for more than any pool gives starts nothing and
is reported naming the quantity; a webhook pool's request carries the quantities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until, webhook_cluster_file
from tests.scale.test_local_pool import FAST, cluster_file, events
from tests.scale.test_webhook_pool import SECRET, CloudStandIn
from titan_runtime import TitanJob

pytestmark = pytest.mark.integration

POOLS = """
- name: cpu
  provider: local
  slots: 4
  gpus: none
  max: 2
- name: gpu
  provider: local
  slots: 4
  cpus: 2
  memory: 1G
  gpus: [0, 1]
  max: 1
  idle_timeout: 600
"""


def test_a_job_asking_for_a_gpu_starts_a_worker_with_gpus_and_runs_on_its_device(
    make_cluster, tmp_path: Path
) -> None:
    cluster = make_cluster(master_args=(*FAST, "--cluster", str(cluster_file(tmp_path, POOLS))))
    client = cluster.client
    assert [w for w in client.list_workers() if w.state == "ALIVE"] == []

    job = client.submit_job(
        TitanJob(command=["sh", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"'], resources={"gpus": 1})
    )
    record = client.wait(job, 60)
    assert record.state == "SUCCEEDED", record.reason
    (line,) = [str(line) for line in client.read_logs(job)]
    assert line in ("[0]", "[1]"), line

    # It ran on a worker of the gpu pool, which offers exactly what the pool declares.
    (worker,) = [w for w in client.list_workers() if w.id == record.worker_id]
    assert (worker.pool, worker.gpus, worker.cpu_count, worker.memory_bytes) == (
        "gpu",
        ["0", "1"],
        2,
        1 << 30,
    )
    assert "GPU" in worker.tags  # as any worker with devices: the pool counts on it
    launches = events(client, "launch")
    assert [e.pool for e in launches] == ["gpu"]  # the cpu pool, closer for jobs asking nothing, did not grow
    assert "1 job(s) need no tags and 1 GPU; no worker has room" in launches[0].message

    # More GPUs than any pool's workers will have: nothing starts, and the reason names the quantity.
    big = client.submit_job(TitanJob(command=["true"], resources={"gpus": 4}))
    wait_until(lambda: events(client, "unserved"), 30, what="the 4-GPU job to be reported")
    (unserved,) = events(client, "unserved")
    assert "1 job(s) need no tags and 4 GPUs, which no pool gives" in unserved.message
    assert "pool gpu: its workers will have 2 GPUs, not 4" in unserved.message
    assert "pool cpu: its workers will have 0 GPUs, not 4" in unserved.message
    notes = {p.name: p.note for p in client.autoscaler_status().pools}
    assert "its workers will have 2 GPUs, not 4" in notes["gpu"], notes
    status = client.autoscaler_status()
    assert any("4 GPUs, which no pool gives" in r for r in status.unserved_reasons), status
    offers = {p.name: (p.cpus, p.memory, p.gpus, p.declares_gpus) for p in status.pools}
    assert offers["gpu"][2:] == (["0", "1"], True), offers
    text = cluster.cli("autoscaler", "status")
    assert "no pool serves: 1 job(s) need no tags and 4 GPUs, which no pool gives" in text.stderr, text.stderr
    assert "GPUs 0,1" in text.stdout, text.stdout
    assert client.get_job(big).state == "READY"
    assert [e.pool for e in events(client, "launch")] == ["gpu"]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudStandIn]:
    """test_webhook_pool's stand-in for a user's cloud glue: checks signatures, starts workers."""
    root = tmp_path / "cloud"
    root.mkdir()
    stand_in = CloudStandIn(root)
    try:
        yield stand_in
    finally:
        stand_in.close()


def test_a_webhook_pool_asks_for_a_worker_with_its_quantities_and_its_token_admits_the_gpu_tag(
    make_cluster, cloud: CloudStandIn, tmp_path: Path
) -> None:
    config = webhook_cluster_file(tmp_path, cloud.url, SECRET, cpus=1, memory="512M", gpus=[3])
    cluster = make_cluster(master_args=(*FAST, "--cluster", str(config)))
    client = cluster.client
    job = client.submit_job(
        TitanJob(command=["sh", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"'], resources={"gpus": 1})
    )
    record = client.wait(job, 60)
    assert record.state == "SUCCEEDED", (record.reason, cluster.master_log()[-3000:])
    assert [str(line) for line in client.read_logs(job)] == ["[3]"]
    (up,) = [r for r in cloud.requests if r["event"] == "scale_up"]
    assert (up["cpus"], up["memory_mb"], up["gpus"]) == (1, 512, ["3"])
    assert up["worker_args"][-6:] == ["--cpus", "1", "--memory", "512M", "--gpus", "3"]
    # The worker adds GPU to its tags (it has a device); its one-time token lets it, as the pool gives GPUs.
    (worker,) = [w for w in client.list_workers() if w.id == record.worker_id]
    assert sorted(worker.tags) == ["GPU", "cloudy"] and worker.gpus == ["3"]
