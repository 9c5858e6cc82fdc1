"""History and retention with a real master: finished runs leave its memory and are read from the
store (across restarts too); `gc` and `runs delete` remove runs with their jobs, logs and keys."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from titan_runtime import TitanJob
from titan_runtime.client.errors import TitanError
from titan_runtime.testing import PYTHON, ProcessCluster, wait_until


#: A job that makes a KV key with its own credential (the key is then its run's).
def kv_writer(job_id: str, key: str) -> TitanJob:
    code = (
        f"from titan_runtime import TitanClient; TitanClient().store_put({key!r}, 'v'); print('wrote {key}')"
    )
    return TitanJob(job_id=job_id, command=[PYTHON, "-c", code])


def finished_run(cluster: ProcessCluster, run_id: str, key: str, **labels: str) -> None:
    run = cluster.client.submit_dag(run_id, [kv_writer("write", key)], run_id=run_id, labels=labels or None)
    assert run.wait(timeout=60).state == "SUCCEEDED", cluster.client.get_run(run_id)


def test_finished_runs_are_read_from_the_store_and_a_restart_loads_only_running_ones(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_cluster()
    cluster.add_worker("w1", slots=2)
    client = cluster.client
    finished_run(cluster, "done-1", "k1")
    finished_run(cluster, "done-2", "k2")
    client.submit_dag("live", [TitanJob(job_id="sleeper", command=["sleep", "60"])], run_id="live")
    wait_until(lambda: client.get_job("live/sleeper").state == "RUNNING", 30, what="the sleeper to start")

    cluster.restart_master()
    assert "restored 1 running runs (1 jobs)" in cluster.master_log()
    client = cluster.client
    run = client.get_run("done-1")
    assert run.state == "SUCCEEDED" and run.counts == {"SUCCEEDED": 1}
    assert client.get_job("done-2/write").attempts[0].state == "SUCCEEDED"
    assert "wrote k2" in "".join(client.read_logs("done-2/write"))
    assert client.get_job("write").run_id == "done-2"  # a bare job id: its latest run, from the store
    listed = client.list_runs(10)
    assert [r.id for r in listed] == ["live", "done-2", "done-1"]
    assert [r.counts for r in listed[1:]] == [{"SUCCEEDED": 1}] * 2
    assert [r.id for r in client.list_runs(10, states=["SUCCEEDED"])] == ["done-2", "done-1"]
    # Submitted again under the same id: the stored run is given back, nothing runs twice.
    again = client.submit_dag("done-1", [kv_writer("write", "k1")], run_id="done-1")
    assert again.id == "done-1" and client.get_run("done-1").counts == {"SUCCEEDED": 1}
    with pytest.raises(TitanError, match="has ended"):
        client.add_jobs("done-1", [TitanJob(job_id="more", command=["true"])])
    assert client.cancel("done-1") == []  # nothing left to cancel
    new = client.submit_dag("after", [TitanJob(job_id="j", command=["true"])], run_id="after")
    assert new.wait(timeout=60).state == "SUCCEEDED"
    assert [r.id for r in client.list_runs(2)] == ["after", "live"]  # seqs go on after the restart
    client.cancel("live", wait=True)


def test_gc_and_runs_delete_remove_runs_with_their_logs_and_keys(make_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cluster = make_cluster(master_args=("--retention", "runs=1", "--retention", "interval=3600"))
    cluster.add_worker("w1", slots=2)
    client = cluster.client
    client.store_put("cluster-wide", "v")
    finished_run(cluster, "old", "by-old")
    finished_run(cluster, "kept", "by-kept", keep="true")
    finished_run(cluster, "new", "by-new")
    logs = cluster.data_dir / "logs"
    assert (logs / "old").is_dir()
    # Artifacts named in the old run's namespace: one only there, one the cluster names too.
    (tmp_path / "model.bin").write_bytes(b"the old run's model")
    (tmp_path / "shared.bin").write_bytes(b"shared by the cluster")
    client.publish_artifact("model", tmp_path / "model.bin", run_id="old")
    client.publish_artifact("shared", tmp_path / "shared.bin", run_id="old")
    shared = client.publish_artifact("shared", tmp_path / "shared.bin")
    blobs = sorted((cluster.data_dir / "artifacts" / "sha256").glob("*/*"))
    assert len(blobs) == 2
    an_hour_ago = time.time() - 3600  # past the grace a just-uploaded file gets
    for blob in blobs:
        os.utime(blob, (an_hour_ago, an_hour_ago))

    dry = cluster.cli("gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["runs"], report["run_ids"], report["dry_run"]) == (1, ["old"], True)
    assert client.get_run("old").state == "SUCCEEDED" and client.store_get("by-old") == "v"

    done = cluster.cli("gc")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted 1 runs, 3 KV keys"), done.stdout  # by-old and 2 names
    assert ", 1 artifacts (" in done.stdout, done.stdout  # the model; the shared one is still named
    (left,) = [b for b in blobs if b.exists()]
    assert f"sha256:{left.parent.name}{left.name}" == shared
    assert (
        client.get_artifact("shared", tmp_path / "back.bin")
        and (tmp_path / "back.bin").read_bytes() == b"shared by the cluster"
    )
    with pytest.raises(TitanError, match="no run 'old'"):
        client.get_run("old")
    assert not (logs / "old").exists()
    assert client.store_get("by-old") is None
    assert [client.store_get(k) for k in ("by-kept", "by-new", "cluster-wide")] == ["v", "v", "v"]

    again = cluster.cli("gc", "--json")
    assert json.loads(again.stdout)["runs"] == 0  # keep=true is never collected; "new" is the latest

    client.submit_dag("live", [TitanJob(job_id="sleeper", command=["sleep", "60"])], run_id="live")
    refused = cluster.cli("runs", "delete", "live")
    assert refused.returncode != 0 and "cancel it first" in refused.stderr, refused.stderr
    deleted = cluster.cli("runs", "delete", "kept", "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["run_ids"] == ["kept"] and client.store_get("by-kept") is None
    missing = cluster.cli("runs", "delete", "kept")
    assert missing.returncode != 0 and "no run 'kept'" in missing.stderr
    client.cancel("live", wait=True)


def test_logs_over_their_size_are_removed_and_readers_are_told(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_cluster(master_args=("--retention", "logs_size=1", "--retention", "interval=3600"))
    cluster.add_worker("w1", slots=2)
    finished_run(cluster, "chatty", "k")
    report = cluster.client.collect_garbage()
    assert (report.runs, report.log_files) == (0, 1) and report.log_bytes > 0
    text = "".join(cluster.client.read_logs("chatty/write"))
    assert "removed by retention" in text and "wrote k" not in text


def test_the_collector_deletes_expired_runs_by_itself(make_cluster) -> None:  # type: ignore[no-untyped-def]
    # Runs are kept about a tenth of a second after they end; the collector looks every 0.2 s.
    cluster = make_cluster(master_args=("--retention", "runs_days=0.000001", "--retention", "interval=0.2"))
    cluster.add_worker("w1", slots=2)
    client = cluster.client
    finished_run(cluster, "brief", "by-brief")
    finished_run(cluster, "kept", "by-kept", keep="true")

    def gone() -> bool:
        try:
            client.get_run("brief")
        except TitanError:
            return True
        return False

    wait_until(gone, 30, what="the collector to delete the expired run")
    assert client.store_get("by-brief") is None
    assert client.get_run("kept").state == "SUCCEEDED" and client.store_get("by-kept") == "v"
    # The pass logs what it deleted once it has also been through the logs and artifacts.
    wait_until(lambda: "retention deleted 1 runs" in cluster.master_log(), 30, what="the pass to be logged")
