"""Every `titan-runtime` command, run as a subprocess against a real cluster."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_runtime import TitanJob

pytestmark = pytest.mark.integration


def test_submit_script_wait_returns_the_exit_code(cluster: ProcessCluster) -> None:
    (cluster.root / "exit3.py").write_text("import sys\nprint('bye')\nsys.exit(3)\n")
    out = cluster.cli("submit", "--wait", "exit3.py")
    assert out.returncode == 3, out.stderr
    job_id = out.stdout.strip()
    assert re.fullmatch(r"r-[0-9a-f]{10}", job_id)
    assert f"job {job_id}/exit3 FAILED: exit code 3" in out.stderr


def test_submit_follow_streams_output_and_passes_args(cluster: ProcessCluster) -> None:
    (cluster.root / "args.sh").write_text('echo "args: $*"\necho "to stderr" >&2\n')
    out = cluster.cli("submit", "--follow", "args.sh", "one", "two words")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "args: one two words\n"
    assert "to stderr" in out.stderr


def test_submit_command_with_env_tag_priority_timeout(make_cluster) -> None:
    c = make_cluster()
    c.add_worker("gpu", tags=["GPU"], slots=1)
    out = c.cli(
        "submit",
        "--tag",
        "GPU",
        "--priority",
        "5",
        "--env",
        "X=ü=1",
        "--follow",
        "--",
        "sh",
        "-c",
        'echo "$X $TITAN_WORKER_NAME"',
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ü=1 gpu\n"
    out = c.cli("submit", "--timeout", "0.5", "--wait", "--", "sleep", "30")
    assert out.returncode == 124
    assert "timed out after 0.5s" in out.stderr


def test_submit_script_args_that_look_like_options(cluster: ProcessCluster) -> None:
    (cluster.root / "opts.py").write_text("import sys\nprint(sys.argv[1:])\n")
    out = cluster.cli("submit", "--follow", "opts.py", "--verbose", "-x")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "['--verbose', '-x']\n"


def test_status_json_logs_result_and_runs(cluster: ProcessCluster) -> None:
    (cluster.root / "res.py").write_text(
        "from titan_runtime import task\nprint('hi')\ntask.set_result([1, 'ü'])\n"
    )
    job_id = cluster.cli("submit", "--wait", "res.py").stdout.strip()
    status = json.loads(cluster.cli("status", job_id, "--json").stdout)
    for key in ("id", "state", "worker_id", "attempt", "exit_code", "reason"):
        assert key in status
    assert (status["id"], status["state"], status["attempt"], status["exit_code"]) == (
        "res",
        "SUCCEEDED",
        1,
        0,
    )
    assert status["worker_id"].startswith("w1-")
    human = cluster.cli("status", f"{job_id}/res")
    assert "SUCCEEDED" in human.stdout and human.returncode == 0
    assert cluster.cli("logs", job_id).stdout == "hi\n"
    assert cluster.cli("logs", job_id, "-f").stdout == "hi\n"
    assert json.loads(cluster.cli("result", job_id).stdout) == [1, "ü"]
    runs = json.loads(cluster.cli("runs", "--json").stdout)
    assert [r["id"] for r in runs] == [job_id]
    assert "SUCCEEDED=1" in cluster.cli("runs").stdout


def test_tables_are_never_cut_when_piped(cluster: ProcessCluster) -> None:
    name = "a-job-id-long-enough-to-need-more-than-eighty-columns-in-any-table-" + "x" * 40
    done = cluster.cli("submit", "--id", name, "--wait", "--", "true")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[0]
    lines = cluster.cli("runs").stdout.splitlines()  # captured: stdout is a pipe
    assert lines[0].split() == ["RUN", "NAME", "STATE", "JOBS", "CREATED"]
    row = next(line for line in lines if name in line)
    assert row.split()[1:3] == [name, "SUCCEEDED"] and "…" not in row, row
    assert run_id in row


def test_cancel_stops_a_running_job(cluster: ProcessCluster) -> None:
    job_id = cluster.cli("submit", "--", "sleep", "300").stdout.strip()
    wait_until(lambda: cluster.client.get_job(job_id).state == "RUNNING", what="the job to start")
    pid = cluster.client.get_job(job_id).attempts[-1].pid
    out = cluster.cli("cancel", job_id)
    assert out.returncode == 0
    assert out.stdout.strip() == f"cancelled {job_id}/sleep"
    assert not pid_alive(pid)
    assert cluster.cli("cancel", job_id).stdout.strip() == f"{job_id}: nothing to cancel (already finished)"


def test_workers_lists_the_fields(cluster: ProcessCluster) -> None:
    workers = json.loads(cluster.cli("workers", "--json").stdout)
    assert len(workers) == 1
    w = workers[0]
    for key in (
        "id",
        "name",
        "host",
        "pid",
        "tags",
        "slots",
        "running",
        "cpu_percent",
        "memory_percent",
        "last_heartbeat",
    ):
        assert key in w
    assert (w["name"], w["slots"], w["running"], w["pid"]) == ("w1", 2, 0, cluster.workers["w1"].pid)
    assert "w1" in cluster.cli("workers").stdout


def test_kv_commands(cluster: ProcessCluster) -> None:
    assert cluster.cli("kv", "put", "clé", "valeur, avec virgule").returncode == 0
    assert cluster.cli("kv", "get", "clé").stdout == "valeur, avec virgule\n"
    assert cluster.cli("kv", "sadd", "s", "x,y").stdout == "1\n"
    assert cluster.cli("kv", "sadd", "s", "x,y").stdout == "0\n"
    assert cluster.cli("kv", "sadd", "s", "z").stdout == "1\n"
    assert cluster.cli("kv", "smembers", "s").stdout == "x,y\nz\n"
    assert cluster.cli("kv", "srem", "s", "z").stdout == "1\n"
    assert cluster.cli("kv", "incr", "n").stdout == "1\n"
    assert cluster.cli("kv", "incr", "n", "41").stdout == "42\n"
    assert cluster.cli("kv", "delete", "clé").stdout == "1\n"
    missing = cluster.cli("kv", "get", "clé")
    assert missing.returncode == 1 and "no value for key 'clé'" in missing.stderr
    bad = cluster.cli("kv", "incr", "s")
    assert bad.returncode == 0  # a set and a value of the same name are separate
    assert cluster.cli("kv", "put", "t", "abc").returncode == 0
    not_int = cluster.cli("kv", "incr", "t")
    assert not_int.returncode == 1 and "is not an integer" in not_int.stderr


def test_kv_values_from_stdin_or_a_file_raw_reads_and_key_listing(cluster: ProcessCluster) -> None:
    big = "ligne\n" * 150_000  # 900 kB: far past what a command line holds
    assert cluster.cli("kv", "put", "p/big", "-", input=big).returncode == 0
    assert cluster.cli("kv", "get", "--raw", "p/big").stdout == big
    (cluster.root / "v.txt").write_text("from a file")
    assert cluster.cli("kv", "put", "p/file", "--file", "v.txt").returncode == 0
    assert cluster.cli("kv", "get", "p/file").stdout == "from a file\n"
    too_big = cluster.cli("kv", "put", "p/huge", "-", input="x" * (1024 * 1024 + 1))
    assert too_big.returncode == 1 and "over the KV limit" in too_big.stderr
    neither = cluster.cli("kv", "put", "p/none")
    assert neither.returncode == 2 and "give the value" in neither.stderr
    assert cluster.cli("kv", "sadd", "p/set", "m").returncode == 0
    assert cluster.cli("kv", "put", "q", "other").returncode == 0
    assert cluster.cli("kv", "list", "p/").stdout == "p/big\np/file\np/set\n"
    listed = json.loads(cluster.cli("kv", "list", "--json", "--limit", "3").stdout)
    assert listed == [
        {"key": "p/big", "kind": "value"},
        {"key": "p/file", "kind": "value"},
        {"key": "p/set", "kind": "set"},
    ]
    for i in range(1200):  # more than one page of the master's (1,000 keys)
        cluster.client.store_put(f"many/{i:05d}", "v")
    keys = cluster.client.store_keys("many/")
    assert list(keys) == [f"many/{i:05d}" for i in range(1200)] and set(keys.values()) == {"value"}
    assert len(cluster.client.store_keys("many/", limit=1001)) == 1001


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_starts_a_cluster_and_sigterm_stops_everything(tmp_path: Path) -> None:
    """Also: clients find a master started on another port through its data dir (no --address)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TITAN_ADDRESS", "TITAN_HOST", "TITAN_PORT")}
    env["TITAN_DATA_DIR"] = str(tmp_path / "data")
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "titan_runtime",
            "up",
            "--port",
            str(port),
            "--workers",
            "2",
            "--slots",
            "1",
            "--dashboard-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = up.stdout.readline()
        assert f"master at 127.0.0.1:{port}, 2 local worker(s)" in first
        assert str(tmp_path / "data" / "token") in up.stdout.readline()
        board = up.stdout.readline()  # "Dashboard: http://127.0.0.1:PORT/ (sign in with the token)"
        assert board.startswith("Dashboard: http://127.0.0.1:"), board
        with urllib.request.urlopen(board.split()[1] + "healthz", timeout=10) as answer:
            assert answer.status == 200
        hint = up.stdout.readline()  # "Try: titan-runtime submit ... Stop with Ctrl-C.": it works as printed
        words = shlex.split(hint.removeprefix("Try: ").split("    ")[0])
        assert words[0] == "titan-runtime", hint
        tried = subprocess.run(
            [sys.executable, "-m", "titan_runtime", *words[1:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert tried.returncode == 0 and tried.stdout.startswith("r-"), (hint, tried.stderr)  # the run id
        token_file = tmp_path / "data" / "token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        done = subprocess.run(
            [sys.executable, "-m", "titan_runtime", "submit", "--follow", "--", "echo", "through up"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0 and done.stdout == "through up\n", done.stderr
        workers = json.loads(
            subprocess.run(
                [sys.executable, "-m", "titan_runtime", "workers", "--json"],
                capture_output=True,
                text=True,
                env=env,
            ).stdout
        )
        pids = [w["pid"] for w in workers]
        assert sorted(w["name"] for w in workers) == ["worker-1", "worker-2"]
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    for pid in pids:
        assert not pid_alive(pid)


def test_help_is_there_for_every_command() -> None:
    for args in ([], ["submit"], ["up"], ["worker"], ["kv"], ["logs"]):
        out = subprocess.run(
            [sys.executable, "-m", "titan_runtime", *args, "--help"], capture_output=True, text=True
        )
        assert out.returncode == 0
        assert "Usage: titan-runtime" in out.stdout


def test_shell_completion_scripts_and_completions() -> None:
    for shell, marker in (("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete --no-files")):
        script = subprocess.run(
            [sys.executable, "-m", "titan_runtime", "completion", shell], capture_output=True, text=True
        )
        assert script.returncode == 0 and marker in script.stdout, (shell, script.stdout[:200])
    env = dict(
        os.environ, COMP_WORDS="titan-runtime kv l", COMP_CWORD="2", _TITAN_RUNTIME_COMPLETE="bash_complete"
    )
    words = subprocess.run([sys.executable, "-m", "titan_runtime"], capture_output=True, text=True, env=env)
    assert words.stdout.split() == ["plain,list"]


def test_runs_are_filtered_by_state_name_label_and_age(cluster: ProcessCluster) -> None:
    client = cluster.client
    ok = client.submit_dag("alpha-1", [TitanJob("t", command=["true"])], labels={"team": "a"})
    bad = client.submit_dag("beta", [TitanJob("f", command=["false"])], labels={"team": "b"})
    also = client.submit_dag("alpha-2", [TitanJob("t", command=["true"])], labels={"team": "b"})
    for run in (ok, bad, also):
        run.wait(60)

    def ids(*args: str) -> list[str]:
        out = cluster.cli("runs", "--json", *args)
        assert out.returncode == 0, out.stderr
        return [r["id"] for r in json.loads(out.stdout)]

    assert ids() == [also, bad, ok]  # newest first
    assert ids("--state", "failed") == [bad]
    assert ids("--state", "SUCCEEDED", "--name", "alpha*") == [also, ok]
    assert ids("--label", "team=b") == [also, bad]
    assert ids("--label", "team=b", "--name", "alpha*", "--limit", "5") == [also]
    assert ids("--since", "1h", "--limit", "2") == [also, bad]
    assert ids("--name", "gamma") == []
    # Paging: the next page starts before the last run of this one (its seq), whatever came since.
    first = json.loads(cluster.cli("runs", "--json", "--limit", "2").stdout)
    assert [r["id"] for r in first] == [also, bad] and first[0]["seq"] > first[1]["seq"] > 0
    client.submit_dag("alpha-3", [TitanJob("t", command=["true"])]).wait(60)
    assert ids("--limit", "2", "--before-seq", str(first[-1]["seq"])) == [ok]
    assert ids("--name", "alpha*", "--before-seq", str(first[0]["seq"])) == [ok]
    wrong = cluster.cli("runs", "--label", "team")
    assert wrong.returncode == 2 and "is not KEY=VALUE" in wrong.stderr
    assert cluster.cli("runs", "--since", "soon").returncode == 2


def test_logs_stream_in_little_memory_and_tail_and_since_pick_lines(cluster: ProcessCluster) -> None:
    script = "import sys\nfor i in range(200_000):\n    sys.stdout.write(f'{i:08d} ' + 'x' * 91 + '\\n')\n"
    (cluster.root / "loud.py").write_text(script)  # 20 MB of output
    job = cluster.cli("submit", "--wait", "loud.py").stdout.split()[0]
    # The CLI under a parent that reports the largest child's peak memory (this test's own children
    # include workers and masters of earlier tests).
    measure = (
        "import resource, subprocess, sys\n"
        "out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE).stdout\n"
        "print(len(out), out.count(b'\\n'), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
    )
    probe = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, "-m", "titan_runtime", "logs", job],
        capture_output=True,
        text=True,
        env=cluster.env(),
        cwd=cluster.root,
        timeout=120,
    )
    size, lines, peak_mb = map(int, probe.stdout.split())
    assert (size, lines) == (20_200_000, 200_000), probe.stderr
    assert peak_mb < 150, f"logs held {peak_mb} MB for a 20 MB log"  # 400+ MB when it kept every line
    tail = cluster.cli("logs", "--tail", "3", job).stdout.splitlines()
    assert [line[:8] for line in tail] == ["00199997", "00199998", "00199999"]
    assert cluster.cli("logs", "--tail", "0", job).stdout == ""
    assert len(cluster.cli("logs", "--since", "1h", "--tail", "5", job).stdout.splitlines()) == 5
    ended = cluster.client.get_job(job).ended_at
    wait_until(lambda: time.time() > ended + 1.5, 10, what="the log to be over a second old")
    assert cluster.cli("logs", "--since", "1s", job).stdout == ""  # every line is older than that
    bad = cluster.cli("logs", "--since", "yesterday", job)
    assert bad.returncode == 2 and "is not a duration" in bad.stderr


def test_a_big_run_is_watched_by_its_failures_and_counts_and_its_jobs_paged(cluster: ProcessCluster) -> None:
    jobs = [f"  - {{id: ok{i}, command: [/bin/true]}}" for i in range(40)]
    jobs += ["  - {id: bad1, command: [sh, -c, 'exit 3']}", "  - {id: bad2, command: [sh, -c, 'exit 4']}"]
    (cluster.root / "big.yaml").write_text("name: big\njobs:\n" + "\n".join(jobs) + "\n")
    out = cluster.cli("run", "--wait", "big.yaml", timeout=120)  # piped
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    run_id = lines[0]
    failures = sorted(line.split()[1] for line in lines[1:-1] if " FAILED: " in line)
    assert failures == ["bad1", "bad2"], out.stdout  # each once
    assert not any(" ok" in line and "SUCCEEDED" in line for line in lines), "a line per job"
    assert lines[-1] == f"run {run_id} (big) FAILED: 42 jobs: 2 FAILED, 40 SUCCEEDED"
    assert len(lines) < 10
    paged = cluster.cli("run-status", run_id, "--jobs", "failed", "--limit", "1")
    assert paged.returncode == 0 and "42 jobs: 2 FAILED, 40 SUCCEEDED" in paged.stdout.splitlines()[0]
    rows = paged.stdout.splitlines()[2:]
    assert len(rows) == 1 and rows[0].split()[1] == "FAILED" and "1 more" in paged.stderr
    record = cluster.client.get_run(run_id, jobs=["SUCCEEDED"], limit=5)
    assert len(record.jobs) == 5 and record.counts == {"FAILED": 2, "SUCCEEDED": 40}
    assert len(cluster.client.get_run(run_id).jobs) == 42
    header = cluster.client.get_run(run_id, jobs=[], limit=1)  # the counts only
    assert header.jobs == [] and header.counts == {"FAILED": 2, "SUCCEEDED": 40}


def test_a_job_no_worker_can_run_is_said_while_waiting_and_can_fail(cluster: ProcessCluster) -> None:
    failed = cluster.cli("submit", "--tag", "gpu", "--fail-if-unplaceable", "1", "--wait", "--", "true")
    assert failed.returncode == 1
    assert "no worker can run it: waiting for a worker with tags {gpu} for 1s" in failed.stderr
    waiting = subprocess.Popen(
        [sys.executable, "-m", "titan_runtime", "submit", "--tag", "gpu", "--wait", "--", "true"],
        env=cluster.env(),
        cwd=cluster.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = waiting.stdout.readline().strip()
        warning = waiting.stderr.readline()  # after about five seconds
        assert "warning:" in warning and "waiting for a worker with tags {gpu}" in warning, warning
        assert "no connected worker can run it" in warning
        status = cluster.cli("status", job).stdout
        assert "waiting for a worker with tags {gpu}" in status
        cluster.client.cancel(job)
        assert waiting.wait(30) == 130
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()


def _in_terminal(cluster: ProcessCluster, *args: str) -> tuple[str, str]:
    """A command's stdout as a terminal 200 columns wide shows it, and its stderr."""
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "titan_runtime", *args],
        stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**cluster.env(), "COLUMNS": "200"},
    )  # fmt: skip
    os.close(follower)
    shown = b""
    try:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the command has exited and closed the terminal
                break
            if not data:
                break
            shown += data
    finally:
        os.close(leader)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(60) == 0, err
    return shown.decode(errors="replace").replace("\r\n", "\n"), err


def test_run_status_shows_a_page_in_a_terminal_and_every_job_piped(cluster: ProcessCluster) -> None:
    run = cluster.client.submit_dag(
        "many", [TitanJob(f"j{i}", command=["true"], tags=["nowhere"]) for i in range(150)]
    )

    def rows(text: str) -> list[str]:
        return [line.split()[0] for line in text.splitlines() if re.match(r"j\d+ ", line)]

    shown, err = _in_terminal(cluster, "run-status", run.id)
    assert rows(shown) == [f"j{i}" for i in range(100)]
    assert "150 jobs: 150 READY" in shown
    assert "... 50 more jobs: --limit 0 for all, --jobs STATE for some" in err
    shown, err = _in_terminal(cluster, "run-status", run.id, "--limit", "0")
    assert len(rows(shown)) == 150 and "more jobs" not in err

    piped = subprocess.run(
        [sys.executable, "-m", "titan_runtime", "run-status", run.id],
        env=cluster.env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert rows(piped.stdout) == [f"j{i}" for i in range(150)] and "more jobs" not in piped.stderr
