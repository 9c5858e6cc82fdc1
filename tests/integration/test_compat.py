"""`titan_runtime.compat`: code written for the original Titan's SDK, with only its import line
changed, gets the answers it checks for (status words, "NULL", "OK", True/False, "DAG-" ids)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_runtime.client.records import JobRecord
from titan_runtime.compat import NULL, TitanClient, TitanJob, original_word

pytestmark = pytest.mark.integration
TERMINAL = {"COMPLETED", "FAILED", "DEAD", "CANCELLED"}


@pytest.fixture
def client(cluster: ProcessCluster) -> TitanClient:
    return TitanClient(address=cluster.address, token=cluster.token)


def script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text(body)
    return str(path)


def status_when_ended(client: TitanClient, job_id: str, timeout: float = 60) -> str:
    """Poll the way the original's load test does: the "DAG-" id, until a terminal word."""
    return wait_until(
        lambda: (word := client.get_job_status(f"DAG-{job_id}")) in TERMINAL and word, timeout, what=job_id
    )


def test_status_words_and_dag_prefixed_ids(client: TitanClient, tmp_path: Path) -> None:
    # What the original's load test asks first, to see that the master is there.
    assert client.get_job_status("DAG-__ping__") == NULL
    ok = script(tmp_path, "ok.py", "print('ok')\n")
    bad = script(tmp_path, "bad.py", "import sys; sys.exit(2)\n")
    gate = tmp_path / "gate"
    held = script(
        tmp_path, "held.py", f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
    )
    ts = int(time.time())
    client.submit_dag(
        f"words-{ts}",
        [
            TitanJob(f"held-{ts}", held),
            TitanJob(f"after-{ts}", ok, parents=[f"held-{ts}"]),
            TitanJob(f"bad-{ts}", bad),
            TitanJob(f"never-{ts}", ok, parents=[f"bad-{ts}"]),
        ],
    )
    wait_until(lambda: client.get_job_status(f"DAG-held-{ts}") == "RUNNING", what="the held job to run")
    assert client.get_job_status(f"DAG-after-{ts}") == "PENDING"
    assert status_when_ended(client, f"bad-{ts}") == "FAILED"
    assert status_when_ended(client, f"never-{ts}") == "FAILED"  # the original left it waiting for ever
    gate.touch()
    assert status_when_ended(client, f"after-{ts}") == "COMPLETED"
    assert client.get_job_status(f"after-{ts}") == "COMPLETED"  # without the prefix too
    assert "ok" in client.fetch_logs(f"DAG-after-{ts}")


def test_many_single_job_dags_polled_by_status_as_the_load_test_does(
    client: TitanClient, tmp_path: Path
) -> None:
    noop = script(tmp_path, "noop.py", "print('ok')\n")
    ts = int(time.time())
    ids = [f"tp-{ts}-{i}" for i in range(20)]
    for job_id in ids:
        client.submit_dag(job_id, [TitanJob(job_id=job_id, filename=noop)])
    assert {status_when_ended(client, job_id) for job_id in ids} == {"COMPLETED"}


def test_the_store_answers_ok_null_and_counts(client: TitanClient) -> None:
    assert client.store_put("k", "v") == "OK"
    assert client.store_get("k") == "v"
    assert client.store_get("missing") == NULL
    assert (client.store_sadd("s", "a,b"), client.store_sadd("s", "a,b"), client.store_sadd("s", "c")) == (
        1,
        0,
        1,
    )
    assert client.store_smembers("s") == ["a,b", "c"]  # a comma inside a member stays (the original split it)
    assert client.store_smembers("none") == []


def test_a_producer_hands_over_to_a_consumer_through_the_store(client: TitanClient, tmp_path: Path) -> None:
    """The original's store example: jobs use the same client from inside the cluster."""
    producer = script(
        tmp_path,
        "producer.py",
        "from titan_runtime.compat import TitanClient\n"
        "c = TitanClient()\n"
        "assert c.store_put('handoff', 'payload-42') == 'OK'\n"
        "assert c.store_sadd('produced', 'one') == 1\n",
    )
    consumer = script(
        tmp_path,
        "consumer.py",
        "from titan_runtime.compat import TitanClient\n"
        "c = TitanClient()\n"
        "value = c.store_get('handoff')\n"
        "assert value == 'payload-42', value\n"
        "assert c.store_smembers('produced') == ['one']\n"
        "print('consumed', value)\n",
    )
    client.submit_dag(
        "handoff", [TitanJob("produce", producer), TitanJob("consume", consumer, parents=["produce"])]
    )
    assert status_when_ended(client, "consume") == "COMPLETED", client.fetch_logs("consume")
    assert "consumed payload-42" in client.fetch_logs("DAG-consume")


def test_delay_is_in_milliseconds(client: TitanClient, tmp_path: Path) -> None:
    noop = script(tmp_path, "noop.py", "print('ok')\n")
    client.submit_dag("delayed", [TitanJob("late", noop, delay=1500)])
    assert status_when_ended(client, "late") == "COMPLETED"
    job = client.get_job("DAG-late")
    assert job.ready_at - job.created_at >= 1.5  # PENDING for the delay, then queued


def test_files_answer_true_false_and_error_strings(client: TitanClient, tmp_path: Path) -> None:
    data = tmp_path / "model.bin"
    data.write_bytes(b"weights")
    assert client.upload_file(data) == "UPLOAD_SUCCESS"
    assert client.upload_file(tmp_path / "nope.bin") == f"ERROR: File not found at: {tmp_path / 'nope.bin'}"
    assert client.upload_project_folder(tmp_path) == "UPLOAD_SUCCESS"
    assert client.deploy_script(data) == "DEPLOY_SUCCESS"
    assert client.publish_artifact("models/latest", data) is True
    saved = tmp_path / "copy.bin"
    assert client.get_artifact("models/latest", save_path=saved) is True
    assert saved.read_bytes() == b"weights"
    assert client.get_artifact("models/none", save_path=tmp_path / "x") is False


def test_stop_service_and_a_timed_out_yaml_wait(client: TitanClient, tmp_path: Path) -> None:
    server = script(tmp_path, "server.py", "import time\nwhile True: time.sleep(1)\n")
    client.submit_dag("svc", [TitanJob("web", server, job_type="SERVICE")])
    wait_until(lambda: client.get_job_status("DAG-web") == "RUNNING", what="the service to run")
    assert client.stop_service("DAG-web") == "STOPPED"
    assert client.stop_service("DAG-nothing").startswith("ERROR: ")
    (tmp_path / "slow.yaml").write_text("name: slow\njobs:\n  - id: slow\n    file: server.py\n")
    assert client.submit_yaml(tmp_path / "slow.yaml", wait=True, timeout=0.5) is False
    client.cancel("DAG-slow")


def test_a_job_lost_too_often_is_dead_and_the_others_keep_their_words() -> None:
    def job(state: str, reason: str = "") -> JobRecord:
        return JobRecord(id="j", run_id="r", state=state, reason=reason, attempt=1, worker_id="", worker_name="",
                         exit_code=None, created_at=0, ready_at=0, started_at=0, ended_at=0, has_result=False,
                         tags=[], priority=1, parents=[], attempts=[])  # fmt: skip

    assert original_word(job("FAILED", "lost 4 times (limit retries.max_lost=3); last: gone")) == "DEAD"
    assert original_word(job("FAILED", "exit code 1")) == "FAILED"
    assert [original_word(job(s)) for s in ("READY", "ASSIGNED", "SUCCEEDED", "CANCELLED")] == [
        "PENDING", "RUNNING", "COMPLETED", "CANCELLED"
    ]  # fmt: skip
