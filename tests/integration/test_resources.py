"""Resources as quantities end to end: workers that declare CPUs, memory and (fake) GPUs, jobs that
ask for them, on real master and worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_runtime import TitanJob

pytestmark = pytest.mark.integration


def _holding(job_id: str, out: Path, gate: Path, resources: dict[str, object]) -> TitanJob:
    """A job that writes the devices it sees, then holds what it asked for until `gate` exists."""
    script = f'printf "%s|%s" "${{CUDA_VISIBLE_DEVICES-unset}}" "$NVIDIA_VISIBLE_DEVICES" > {out}/{job_id}.tmp; mv {out}/{job_id}.tmp {out}/{job_id}; while [ ! -e {gate} ]; do sleep 0.01; done'
    return TitanJob(job_id=job_id, command=["sh", "-c", script], resources=resources)


def _seen(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir() if not p.name.endswith(".tmp")}


def test_gpu_jobs_get_their_own_devices_and_wait_for_a_free_one(make_cluster, tmp_path: Path) -> None:
    cluster: ProcessCluster = make_cluster()
    cluster.add_worker("gpu", slots=8, args=["--gpus", "0,1"])
    client = cluster.client
    out, gate = tmp_path / "out", tmp_path / "gate"
    out.mkdir()
    run = client.submit_dag("gpus", [_holding(f"g{i}", out, gate, {"gpus": 1}) for i in range(3)])
    wait_until(lambda: len(_seen(out)) == 2, what="two GPU jobs to start")
    seen = _seen(out)
    assert sorted(v.split("|")[0] for v in seen.values()) == ["0", "1"], seen
    assert all(v.split("|")[0] == v.split("|")[1] for v in seen.values()), seen
    third = next(f"g{i}" for i in range(3) if f"g{i}" not in seen)
    waiting = client.get_job(f"{run}/{third}")
    assert waiting.state == "READY"
    assert waiting.reason.startswith("waiting for free resources (1 slot(s), 1 GPU)"), waiting.reason

    # A job that asks for no GPU is not held up behind the waiting one, and sees no device.
    plain = client.submit_job(TitanJob(command=["sh", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"']))
    assert client.wait(plain, 30).state == "SUCCEEDED"
    assert [str(line) for line in client.read_logs(plain)] == ["[]"]

    worker = client.list_workers()[0]
    assert sorted(worker.gpus_used) == ["0", "1"] and worker.gpus == ["0", "1"]
    assert "GPU" in worker.tags

    gate.touch()
    record = client.wait_run(run, timeout=30)
    assert record.state == "SUCCEEDED"
    devices = {j.id: j.attempts[-1].gpus for j in record.jobs}
    assert all(len(d) == 1 and d[0] in ("0", "1") for d in devices.values()), devices
    assert _seen(out)[third].split("|")[0] in ("0", "1")
    wait_until(lambda: client.list_workers()[0].gpus_used == [], what="the devices to be released")


def test_cpus_and_memory_pack_without_overcommitting(make_cluster, tmp_path: Path) -> None:
    cluster: ProcessCluster = make_cluster()
    cluster.add_worker("small", slots=8, args=["--cpus", "2", "--memory", "1G", "--gpus", "none"])
    client = cluster.client
    out, gate = tmp_path / "out", tmp_path / "gate"
    out.mkdir()
    jobs = [_holding(f"c{i}", out, gate, {"cpus": 1, "memory": "256M"}) for i in range(3)]
    jobs.append(_holding("half", out, gate, {"cpus": 0.5, "memory": "512M"}))
    run = client.submit_dag("pack", jobs)
    wait_until(lambda: len(_seen(out)) == 2, what="two one-CPU jobs to start")
    # 2 CPUs: the two one-CPU jobs that run hold them all; the half-CPU job waits too.
    running = client.get_run(run)
    assert sorted(j.state for j in running.jobs) == ["READY", "READY", "RUNNING", "RUNNING"]
    worker = client.list_workers()[0]
    assert worker.cpus_used == 2 and worker.memory_used_mb == 512 and worker.cpu_count == 2
    assert worker.memory_bytes == 1 << 30 and worker.gpus == []
    assert all(v.split("|")[0] == "unset" for v in _seen(out).values())  # no GPUs: nothing set

    too_big = client.submit_job(TitanJob(command=["true"], resources={"memory": "2G"}, fail_if_unplaceable=1))
    record = client.wait(too_big, 30)
    assert record.state == "FAILED"
    assert "2 GiB of memory" in record.reason and "the largest that could: small" in record.reason, (
        record.reason
    )
    gate.touch()
    assert client.wait_run(run, timeout=30).state == "SUCCEEDED"


def test_the_cli_asks_for_quantities_and_lists_what_workers_hold(make_cluster, tmp_path: Path) -> None:
    cluster: ProcessCluster = make_cluster()
    cluster.add_worker("gpu", slots=2, args=["--gpus", "7", "--cpus", "4", "--memory", "2G"])
    done = cluster.cli(
        "submit", "--gpus", "1", "--cpus", "0.5", "--memory", "100M", "--wait", "--", "sh", "-c",
        "echo $CUDA_VISIBLE_DEVICES",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    assert [str(line) for line in cluster.client.read_logs(job)] == ["7"]
    status = cluster.cli("status", job)
    assert "gpus       7" in status.stdout, status.stdout
    listing = json.loads(cluster.cli("workers", "--json").stdout)
    assert listing[0]["gpus"] == ["7"] and listing[0]["cpu_count"] == 4
    assert listing[0]["memory_enforcement"] in ("cgroup v2", "cgroup v1", "rlimit")
    table = cluster.cli("workers").stdout
    assert "0/4" in table and "0/1" in table, table
    assert f"0 MiB/2 GiB ({listing[0]['memory_enforcement']})" in table, table

    bad = cluster.cli("submit", "--memory", "lots", "--", "true")
    assert bad.returncode != 0 and "resources.memory must be a size such as 512M" in bad.stderr, bad.stderr
    bad = cluster.cli("worker", "--master", cluster.address, "--gpus", "0,0")
    assert bad.returncode == 2 and "a device is listed twice" in bad.stderr, bad.stderr


def test_a_restarted_master_keeps_the_devices_running_jobs_hold(make_cluster, tmp_path: Path) -> None:
    cluster: ProcessCluster = make_cluster()
    cluster.add_worker("gpu", slots=4, args=["--gpus", "0,1"])
    client = cluster.client
    out, gate = tmp_path / "out", tmp_path / "gate"
    out.mkdir()
    first = client.submit_job(_holding("first", out, gate, {"gpus": 1}))
    wait_until(lambda: "first" in _seen(out), what="the first GPU job to start")
    held = _seen(out)["first"].split("|")[0]
    cluster.restart_master()
    client = cluster.client
    wait_until(lambda: client.get_job(first).state == "RUNNING", what="the job to be adopted")
    second = client.submit_job(_holding("second", out, gate, {"gpus": 1}))
    wait_until(lambda: "second" in _seen(out), what="the second GPU job to start")
    assert _seen(out)["second"].split("|")[0] == {"0": "1", "1": "0"}[held]
    third = client.submit_job(_holding("third", out, gate, {"gpus": 1}))
    wait_until(
        lambda: client.get_job(third).reason.startswith("waiting for free resources"),
        what="the third to wait for a device",
    )
    gate.touch()
    for job in (first, second, third):
        assert client.wait(job, 30).state == "SUCCEEDED"
