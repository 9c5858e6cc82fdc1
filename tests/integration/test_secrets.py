"""Secrets through real processes: set from the CLI, delivered into a job's environment only,
masked in its logs, absent from everything the master stores, answers or logs (issue 19, item 6)."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.helpers import PYTHON, ProcessCluster
from titan_runtime import Conflict, PermissionDenied, TitanClient, TitanJob
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc

pytestmark = pytest.mark.integration

DB_VALUE = "pg-Pa55word-7f3c9e1d"
API_VALUE = "api-key-0c4b2a88e6"
HASH_ENV = (
    "import hashlib, json, os; "
    "names = os.environ['HASHED'].split(','); "
    "json.dump({n: hashlib.sha256(os.environ.get(n, '').encode()).hexdigest() for n in names}, "
    "open(os.environ['TITAN_RESULT_FILE'], 'w'))"
)
# Prints the value whole on stdout, then in two pieces with a pause between them (two reads of the
# pipe), and across a newline-less flush on stderr.
PRINT_ENV = textwrap.dedent(
    """
    import os, sys, time
    v = os.environ["PGPASSWORD"]
    print("whole:", v, flush=True)
    sys.stdout.write("pieces: " + v[:7]); sys.stdout.flush(); time.sleep(0.3)
    sys.stdout.write(v[7:] + " end\\n"); sys.stdout.flush()
    sys.stderr.write("err " + v[:3]); sys.stderr.flush(); time.sleep(0.3)
    sys.stderr.write(v[3:] + "\\n"); sys.stderr.flush()
    """
)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


REPO = Path(__file__).resolve().parents[2]


def cli(cluster: ProcessCluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`titan-runtime ARGS` of this checkout (the CLI runs in the cluster's directory)."""
    env = dict(cluster.env(), PYTHONPATH=str(REPO))
    return subprocess.run(
        [PYTHON, "-m", "titan_runtime", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cluster.root,
        check=False,
    )


def hashed_job(secrets: list[str] | dict[str, str], names: list[str], **kw: object) -> TitanJob:
    return TitanJob(
        command=[sys.executable, "-c", HASH_ENV],
        env={"HASHED": ",".join(names)},
        secrets=secrets,
        **kw,  # type: ignore[arg-type]
    )


def files_holding(root: Path, value: str) -> list[str]:
    """Every file under `root` whose bytes hold `value` (the store, its WAL, logs, spools, workspaces)."""
    return [
        str(p)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and value.encode() in p.read_bytes()
    ]


def test_a_secret_set_from_the_cli_reaches_the_jobs_environment_and_nothing_else(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    piped = cli(cluster, "secret", "set", "db-password", stdin=DB_VALUE + "\n")
    assert piped.returncode == 0, piped.stderr
    value_file = tmp_path / "api.txt"  # outside the cluster's directory, which is searched below
    value_file.write_text(API_VALUE + "\n")
    from_file = cli(cluster, "secret", "set", "API_KEY", "--file", str(value_file))
    assert from_file.returncode == 0, from_file.stderr
    listed = json.loads(cli(cluster, "secret", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["API_KEY", "db-password"]
    key = cluster.data_dir / "secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600

    client = cluster.client
    hashed = client.submit_job(
        hashed_job({"PGPASSWORD": "db-password", "API_KEY": "API_KEY"}, ["PGPASSWORD", "API_KEY"])
    )
    printed = client.submit_job(
        TitanJob(command=[sys.executable, "-c", PRINT_ENV], secrets={"PGPASSWORD": "db-password"})
    )
    assert client.wait(hashed, 30).state == "SUCCEEDED"
    assert client.wait(printed, 30).state == "SUCCEEDED"
    # One trailing newline of stdin and of the file was dropped, nothing else.
    assert client.get_result(hashed) == {"PGPASSWORD": sha(DB_VALUE), "API_KEY": sha(API_VALUE)}

    logs = cli(cluster, "logs", printed)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "whole: ***\npieces: *** end\n" and logs.stderr == "err ***\n"
    assert DB_VALUE not in logs.stdout and DB_VALUE not in logs.stderr

    # Spec readback names the secrets, never their values.
    with grpc.insecure_channel(cluster.address) as channel:
        stub = rpc.TitanStub(channel)
        auth = (("authorization", f"Bearer {cluster.token}"),)
        info = stub.GetJob(pb.JobRef(ref=hashed), metadata=auth, timeout=10)
        assert dict(info.spec.secrets) == {"PGPASSWORD": "db-password", "API_KEY": "API_KEY"}
        run = stub.GetRun(pb.RunRef(run_id=hashed.split("/")[0]), metadata=auth, timeout=10)
        for message in (info, run):
            wire = message.SerializeToString()
            assert DB_VALUE.encode() not in wire and API_VALUE.encode() not in wire
    for args in (("status", hashed, "--json"), ("run-status", hashed.split("/")[0], "--json")):
        shown = cli(cluster, *args)
        assert shown.returncode == 0, shown.stderr
        assert DB_VALUE not in shown.stdout and API_VALUE not in shown.stdout
    audit = cli(cluster, "audit", "--json")
    sets = [e for e in json.loads(audit.stdout) if e["rpc"] == "SetSecret"]
    assert [e["target"] for e in sets] == ["db-password", "API_KEY"]

    cluster.stop_worker("w1")  # its spool and workspaces are searched too, as it left them
    for value in (DB_VALUE, API_VALUE):
        assert value not in cluster.master_log() and value not in cluster.worker_log("w1")
        assert files_holding(cluster.root, value) == []
    db = cluster.data_dir / "titan.db"
    assert db.exists()  # the search above covered the store (and its -wal file)


def test_a_py_job_and_both_yaml_forms_get_their_secrets(cluster: ProcessCluster, tmp_path: Path) -> None:
    client = cluster.client
    client.set_secret("API_KEY", API_VALUE)
    client.set_secret("db-password", DB_VALUE.encode())
    script = tmp_path / "check.py"
    script.write_text(
        "import hashlib, json, os\n"
        "print('key is', os.environ['API_KEY'])\n"
        "json.dump({'key': hashlib.sha256(os.environ['API_KEY'].encode()).hexdigest(), 'ppid': os.getppid()},\n"
        "          open(os.environ['TITAN_RESULT_FILE'], 'w'))\n"
    )
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        textwrap.dedent(
            f"""
            name: with-secrets
            jobs:
              - id: listed
                file: check.py
                secrets: [API_KEY]
              - id: mapped
                command: [{sys.executable}, -c, "{HASH_ENV}"]
                env: {{HASHED: PGPASS}}
                secrets: {{PGPASS: db-password}}
            """
        )
    )
    run = client.submit_yaml(pipeline)
    assert client.wait_run(run.id, 30).state == "SUCCEEDED"
    listed = client.get_result(f"{run.id}/listed")
    assert listed["key"] == sha(API_VALUE)
    # Exec'd by the worker itself, not forked by its Python launcher (whose heap later jobs copy).
    assert listed["ppid"] == cluster.workers["w1"].pid
    assert client.get_result(f"{run.id}/mapped") == {"PGPASS": sha(DB_VALUE)}
    logs = cli(cluster, "logs", f"{run.id}/listed").stdout
    assert "key is ***" in logs and API_VALUE not in logs


def test_rotating_a_secret_gives_the_next_job_the_new_value_and_removing_it_refuses_submissions(
    cluster: ProcessCluster,
) -> None:
    client = cluster.client
    client.set_secret("rotated", "first-value-1")
    job = client.submit_job(hashed_job({"VALUE": "rotated"}, ["VALUE"]))
    assert client.wait(job, 30).state == "SUCCEEDED"
    assert client.get_result(job) == {"VALUE": sha("first-value-1")}
    client.set_secret("rotated", "second-value-2")
    job = client.submit_job(hashed_job({"VALUE": "rotated"}, ["VALUE"]))
    assert client.wait(job, 30).state == "SUCCEEDED"
    assert client.get_result(job) == {"VALUE": sha("second-value-2")}

    removed = cli(cluster, "secret", "rm", "rotated")
    assert removed.returncode == 0, removed.stderr
    again = cli(cluster, "secret", "rm", "rotated")
    assert again.returncode == 1 and "no secret 'rotated'" in again.stderr
    with pytest.raises(
        Conflict, match=r"secret rotated is not set; set it with `titan-runtime secret set rotated`"
    ):
        client.submit_job(hashed_job({"VALUE": "rotated"}, ["VALUE"]))
    empty = cli(cluster, "secret", "set", "nothing", stdin="")
    assert empty.returncode == 1 and "no value in stdin" in empty.stderr
    assert client.list_secrets() == []


def test_a_secret_deleted_after_submission_fails_the_job_instead_of_running_it_without(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    client = cluster.client
    client.set_secret("short-lived", "short-lived-value")
    gate = tmp_path / "gate"
    run = client.submit_dag(
        "late",
        [
            TitanJob("wait", command=["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"]),
            hashed_job({"VALUE": "short-lived"}, ["VALUE"], job_id="uses", parents=["wait"]),
        ],
    )
    client.delete_secret("short-lived")
    gate.touch()
    assert client.wait_run(run.id, 30).state == "FAILED"
    job = client.get_job(f"{run.id}/uses")
    assert job.state == "FAILED"
    assert "secret short-lived was deleted after submission" in job.reason
    assert job.attempts[-1].pid == 0  # no process ever started


def test_a_jobs_credential_cannot_set_list_delete_or_use_secrets(cluster: ProcessCluster) -> None:
    cluster.client.set_secret("guarded", "guarded-value")
    job = cluster.client.submit_job(
        TitanJob(command=["sh", "-c", 'printf \'"%s"\' "$TITAN_TOKEN" > "$TITAN_RESULT_FILE"'])
    )
    assert cluster.client.wait(job, 30).state == "SUCCEEDED"
    credential = cluster.client.get_result(job)
    # The run still counts its credential good for --credential-grace (60 s) after it ended.
    with TitanClient(cluster.address, token=credential) as as_job:
        with pytest.raises(PermissionDenied, match="cannot call SetSecret: secrets are the cluster's"):
            as_job.set_secret("guarded", "replaced")
        with pytest.raises(PermissionDenied, match="cannot call ListSecrets"):
            as_job.list_secrets()
        with pytest.raises(PermissionDenied, match="cannot call DeleteSecret"):
            as_job.delete_secret("guarded")
        with pytest.raises(PermissionDenied, match=r"a job of run \S+ cannot submit jobs that use secrets"):
            as_job.submit_job(TitanJob(command=["env"], secrets={"X": "guarded"}))
    assert [s.name for s in cluster.client.list_secrets()] == ["guarded"]


def test_secrets_survive_a_restart_and_a_key_others_can_read_stops_the_master(
    make_cluster: Callable[..., ProcessCluster],
) -> None:
    cluster = make_cluster()
    cluster.client.set_secret("kept", "kept-across-restarts")
    cluster.restart_master()
    cluster.add_worker("w", slots=1)
    job = cluster.client.submit_job(hashed_job({"VALUE": "kept"}, ["VALUE"]))
    assert cluster.client.wait(job, 30).state == "SUCCEEDED"
    assert cluster.client.get_result(job) == {"VALUE": sha("kept-across-restarts")}
    key = cluster.data_dir / "secrets.key"
    key.chmod(0o640)
    with pytest.raises(
        AssertionError, match=r"master exited with 1:[\s\S]*readable by other users \(mode 640\)"
    ):
        cluster.restart_master()
