"""Clients ride out a master restart: waits and log followers resume, no line lost or printed twice.

The job prints numbered lines, then holds at a gate (a file the test creates once the master is
back) before it prints the rest: so the restart always happens mid-job, and the lines after the
gate can only reach the client through the restarted master.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import PYTHON, ProcessCluster, wait_until
from titan_runtime import AsyncTitanClient, TitanClient, TitanJob
from titan_runtime.client.records import LogLine

pytestmark = pytest.mark.integration

LINES = 40
GATE_AT = 21  # lines before it are printed before the gate, the rest after

JOB = """\
import os, sys, time
gate, code = sys.argv[1], int(sys.argv[2])
attempt = int(os.environ.get("TITAN_ATTEMPT", "1"))
first, last = (1, {lines}) if len(sys.argv) < 4 else ((1, 30) if attempt == 1 else (31, {lines}))
deadline = time.monotonic() + 120  # a test that failed must not leave it waiting for ever
for i in range(first, last + 1):
    if i == {gate_at}:
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
    print(f"line {{i:02d}}", flush=True)
    time.sleep(0.1)
sys.exit(code if attempt > 1 or len(sys.argv) < 4 else 1)
"""


def expected(lines: int = LINES, prefix: str = "") -> list[str]:
    return [f"{prefix}line {i:02d}" for i in range(1, lines + 1)]


@pytest.fixture
def cluster(make_cluster) -> ProcessCluster:  # type: ignore[no-untyped-def]
    """A master and one worker with room for three runs held at their gates at once."""
    c = make_cluster()
    c.add_worker("w1", slots=4)
    return c


@pytest.fixture
def job_script(cluster: ProcessCluster) -> Path:
    path = cluster.root / "numbered.py"
    path.write_text(JOB.format(lines=LINES, gate_at=GATE_AT))
    return path


class Command:
    """`titan-runtime ARGS` running in the background, its output collected line by line as it comes.

    With `tty`, its stdout is a terminal (so `run --wait` draws its live table)."""

    def __init__(self, cluster: ProcessCluster, *args: str, tty: bool = False) -> None:
        env = dict(cluster.env(), PYTHONUNBUFFERED="1")
        self._terminal = -1
        stdout: int = subprocess.PIPE
        if tty:
            self._terminal, stdout = pty.openpty()
        try:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "titan_runtime", *args],
                stdout=stdout,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd=cluster.root,
            )
        finally:
            if tty:
                os.close(stdout)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        out = self._read_terminal if tty else self._read
        self._readers = [
            threading.Thread(target=out, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe: object, into: list[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def _read_terminal(self, _: object, into: list[str]) -> None:
        """Everything drawn on the terminal, as one growing text (a live table redraws lines)."""
        into.append("")
        while True:
            try:
                data = os.read(self._terminal, 65536)
            except OSError:  # EIO: the command has exited and closed the terminal
                return
            if not data:
                return
            into[0] += data.decode(errors="replace")

    def wait(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self._terminal >= 0:
            for reader in self._readers:
                reader.join(10)
            os.close(self._terminal)
            self._terminal = -1


def restart_then_open_gate(cluster: ProcessCluster, gate: Path) -> None:
    cluster.restart_master()
    gate.touch()


def test_submit_follow_and_logs_follow_print_every_line_once_across_a_restart(
    cluster: ProcessCluster, job_script: Path
) -> None:
    gate = cluster.root / "gate"
    submit = Command(cluster, "submit", "--follow", job_script.name, str(gate), "0")
    logs: Command | None = None
    try:
        run_id = wait_until(lambda: submit.stderr[:1], 60, what="the run id")[0]
        logs = Command(cluster, "logs", "--follow", run_id)
        wait_until(lambda: len(submit.stdout) >= 5 and len(logs.stdout) >= 5, 60, what="the first lines")
        restart_then_open_gate(cluster, gate)
        assert submit.wait() == 0, "\n".join(submit.stderr)
        assert logs.wait() == 0, "\n".join(logs.stderr)
    finally:
        submit.stop()
        if logs is not None:
            logs.stop()
    assert submit.stdout == expected()
    assert logs.stdout == expected()


def test_submit_wait_returns_the_jobs_exit_code_across_a_restart(
    cluster: ProcessCluster, job_script: Path
) -> None:
    gate = cluster.root / "gate"
    cmd = Command(cluster, "submit", "--wait", job_script.name, str(gate), "3")
    try:
        run_id = wait_until(lambda: cmd.stdout[:1], 60, what="the run id")[0]
        wait_until(lambda: len(cluster.client.read_logs(run_id)) >= 5, 60, what="the first lines")
        restart_then_open_gate(cluster, gate)
        assert cmd.wait() == 3, "\n".join(cmd.stderr)
    finally:
        cmd.stop()
    assert f"titan-runtime: job {run_id}/numbered FAILED: exit code 3" in cmd.stderr


def test_run_follow_and_wait_of_a_dag_across_a_restart(cluster: ProcessCluster, job_script: Path) -> None:
    gate = cluster.root / "gate"
    (cluster.root / "dag.yaml").write_text(
        "name: restartable\n"
        "jobs:\n"
        f"  - {{id: slow, file: {job_script.name}, args: '{gate} 0'}}\n"
        "  - {id: after, command: [echo, done], depends_on: [slow]}\n"
    )
    follow = Command(cluster, "run", "--follow", "dag.yaml")
    wait = Command(cluster, "run", "--wait", "dag.yaml")
    table = Command(cluster, "run", "--wait", "dag.yaml", tty=True)
    commands = (follow, wait, table)
    try:
        wait_until(lambda: len(follow.stdout) >= 5, 60, what="the first lines")
        wait_until(lambda: any(" slow RUNNING" in line for line in wait.stdout), 60, what="slow to run")
        wait_until(lambda: "RUNNING" in "".join(table.stdout), 60, what="the live table")
        restart_then_open_gate(cluster, gate)
        for command in commands:
            assert command.wait() == 0, "\n".join(command.stdout + command.stderr)
    finally:
        for command in commands:
            command.stop()
    assert follow.stdout == [*expected(prefix="[slow] "), "[after] done"]
    assert "SUCCEEDED: 2 jobs: 2 SUCCEEDED" in follow.stderr[-1]
    assert "SUCCEEDED: 2 jobs: 2 SUCCEEDED" in wait.stdout[-1]
    drawn = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", table.stdout[0])
    assert "(restartable) SUCCEEDED: 2 jobs:" in drawn


def test_sdk_wait_and_follow_logs_go_on_into_the_retry_across_a_restart(
    cluster: ProcessCluster, job_script: Path
) -> None:
    gate = cluster.root / "gate"
    client = TitanClient(address=cluster.address, token=cluster.token)
    try:
        job = TitanJob(
            "numbered",
            filename=str(job_script),
            args=[str(gate), "0", "retry"],
            retries={"attempts": 2, "backoff": 0.1},
        )
        ref = client.submit_job(job)
        lines: list[LogLine] = []
        outcome: dict[str, object] = {}

        def follow() -> None:
            try:
                lines.extend(client.follow_logs(ref))
            except Exception as exc:  # reported by the assertions below
                outcome["follow"] = exc

        def wait() -> None:
            try:
                outcome["record"] = client.wait(ref, timeout=120)
            except Exception as exc:
                outcome["wait"] = exc

        threads = [threading.Thread(target=follow), threading.Thread(target=wait)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(lines) >= 5, 60, what="the first lines")
        restart_then_open_gate(cluster, gate)
        for thread in threads:
            thread.join(120)
        assert "follow" not in outcome and "wait" not in outcome, outcome
        record = outcome["record"]
        assert record.state == "SUCCEEDED" and record.attempt == 2  # type: ignore[attr-defined]
        assert lines == expected()
        assert [line.attempt for line in lines] == [1] * 30 + [2] * 10
    finally:
        client.close()


def test_async_sdk_wait_and_follow_logs_across_a_restart(cluster: ProcessCluster, job_script: Path) -> None:
    gate = cluster.root / "gate"

    async def scenario() -> None:
        async with AsyncTitanClient(address=cluster.address, token=cluster.token) as client:
            ref = await client.submit_job(
                TitanJob("numbered", filename=str(job_script), args=[str(gate), "0"])
            )
            lines: list[LogLine] = []

            async def follow() -> None:
                async for line in client.follow_logs(ref):
                    lines.append(line)

            following = asyncio.create_task(follow())
            waiting = asyncio.create_task(client.wait(ref, timeout=120))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                None, lambda: wait_until(lambda: len(lines) >= 5, 60, what="the first lines")
            )
            await loop.run_in_executor(None, restart_then_open_gate, cluster, gate)
            await asyncio.wait_for(following, 120)
            record = await asyncio.wait_for(waiting, 120)
            assert record.state == "SUCCEEDED"
            assert lines == expected()

    asyncio.run(scenario())


def test_a_master_gone_for_good_fails_the_follower_after_the_reconnect_timeout(
    cluster: ProcessCluster, job_script: Path
) -> None:
    gate = cluster.root / "gate"
    cmd = Command(cluster, "submit", "--follow", "--reconnect-timeout", "2", job_script.name, str(gate), "0")
    try:
        wait_until(lambda: len(cmd.stdout) >= 5, 60, what="the first lines")
        cluster.kill_master(signal.SIGTERM)
        assert cmd.wait(timeout=30) == 1
    finally:
        cmd.stop()
        gate.touch()
    errors = [line for line in cmd.stderr if line.startswith("titan-runtime: error:")]
    assert len(errors) == 1, cmd.stderr
    assert re.search(
        rf"the Titan master at {re.escape(cluster.address)} has been unreachable for 2\.\d+s", errors[0]
    )
    assert cmd.stderr[-1] == errors[0]  # one line, no traceback after it
