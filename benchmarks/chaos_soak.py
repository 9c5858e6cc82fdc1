"""Chaos soak: minutes of random submissions while workers are killed with -9, the master is killed
with -9, `titan-runtime up` is stopped with Ctrl-C and started again, and the data dir's disk fills
up and is freed. Not part of `make test` or `make bench` (it takes half an hour by default).

At the end, after the chaos stops and the cluster is left to settle: every accepted run is terminal,
each job committed at most one result (a SUCCEEDED job exactly one), no attempt started before its
job's parents had committed, and no process started here is left. Prints what happened.

    sudo .venv/bin/python benchmarks/chaos_soak.py --minutes 30

As root the data dir is a 512 MB tmpfs the soak mounts (and fills); otherwise the disk part is
skipped and the table says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import psutil
from _common import table

from titan_runtime import ResourceExhausted, TitanClient, TitanError, TitanJob
from titan_runtime.core.model import Attempt, AttemptState, Job, JobState
from titan_runtime.store import SqliteStore
from titan_runtime.store.base import Snapshot

MARK = "TITAN_CHAOS_MARK"
PYTHON = sys.executable


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Soak:
    def __init__(self, root: Path, disk: Path | None, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.data = (disk or root) / "data"
        self.work = (disk or root) / "workers"
        self.disk = disk
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.mark = uuid.uuid4().hex
        self.env = dict(os.environ, **{MARK: self.mark})
        self.up: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.names = iter(f"e{n}" for n in range(100_000))
        self.events: Counter[str] = Counter()
        self.runs: list[str] = []
        self.filler: Path | None = None
        self.master_peak_mb = 0.0

    # ------------------------------------------------------------------ processes

    def log(self, name: str) -> int:
        return os.open(self.root / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def start_up(self) -> None:
        argv = [PYTHON, "-m", "titan_runtime", "up", "--port", str(self.port), "--workers", "1"]
        argv += ["--slots", "2", "--data-dir", str(self.data), "--min-free", "32M"]
        out = self.log("up")
        self.up = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=self.env)
        os.close(out)
        self.client_until(lambda c: c.list_workers() is not None, 60)

    def start_worker(self) -> None:
        name = next(self.names)
        argv = [PYTHON, "-m", "titan_runtime", "worker", "--master", self.address, "--name", name]
        argv += [
            "--slots",
            "2",
            "--work-dir",
            str(self.work / name),
            "--kill-grace",
            "2",
            "--min-free",
            "16M",
        ]
        out = self.log(f"worker-{name}")
        env = dict(self.env, TITAN_TOKEN=(self.data / "token").read_text().strip())
        self.workers[name] = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
        os.close(out)

    def client(self) -> TitanClient:
        return TitanClient(address=self.address, data_dir=str(self.data), reconnect_timeout=30)

    def client_until(self, ask, timeout: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.up is not None and self.up.poll() is not None:
                raise RuntimeError(f"up exited with {self.up.returncode}; see {self.root / 'up.log'}")
            try:
                with self.client() as c:
                    if ask(c):
                        return
            except (TitanError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the cluster did not answer within {timeout}s")

    # ------------------------------------------------------------------ chaos

    def dag(self) -> list[TitanJob]:
        rng = self.rng
        jobs: list[TitanJob] = []
        for i in range(rng.randint(1, 25)):
            parents = sorted({f"j{rng.randrange(i)}" for _ in range(rng.randint(0, 2))}) if i else []
            sleep = rng.choice(["0", "0.05", "0.2", "1"])
            code = 1 if rng.random() < 0.05 else 0
            script = f"sleep {sleep}; echo '{{\"n\": {i}}}' > $TITAN_RESULT_FILE; exit {code}"
            if rng.random() < 0.01:  # a loud one: megabytes of output, towards the watermark
                script = f"head -c {rng.randint(1, 5)}000000 /dev/zero | tr '\\0' x | fold -w 100; {script}"
            job = TitanJob(f"j{i}", command=["sh", "-c", script], parents=parents or None)
            if parents and rng.random() < 0.2:
                job.when = (
                    f"{parents[0]}['n'] >= 0" if rng.random() < 0.8 else f"{parents[0]} * 10000000 != ''"
                )
                job.trigger_rule = "all_done"
            if rng.random() < 0.3:
                job.retries = {"attempts": 2, "max_lost": 50}
            else:
                job.retries = {"attempts": 1, "max_lost": 50}
            jobs.append(job)
        return jobs

    def submit(self) -> None:
        try:
            with self.client() as c:
                self.runs.append(c.submit_dag("chaos", self.dag()).id)
            self.events["runs accepted"] += 1
        except ResourceExhausted:
            self.events["runs refused: disk nearly full"] += 1
        except TitanError as exc:
            self.events[f"runs refused: {type(exc).__name__}"] += 1

    def kill_worker(self) -> None:
        if not self.workers:
            return
        name = self.rng.choice(sorted(self.workers))
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.events["worker kill -9"] += 1
        self.start_worker()

    def kill_master(self, sig: int) -> None:
        assert self.up is not None
        self.sample_master()
        self.up.send_signal(sig)
        try:
            self.up.wait(60)
        except subprocess.TimeoutExpired:
            self.up.kill()
            self.up.wait()
            self.events["up did not stop within 60 s of Ctrl-C (killed)"] += 1
        self.events["master (up) kill -9" if sig == signal.SIGKILL else "Ctrl-C of up"] += 1
        self.start_up()

    def fill_disk(self) -> None:
        if self.disk is None:
            return
        if self.filler is not None:
            self.filler.unlink(missing_ok=True)
            self.filler = None
            self.events["disk freed"] += 1
            return
        self.filler = self.disk / "filler"
        with open(self.filler, "wb") as fh, contextlib.suppress(OSError):
            while free_bytes(self.disk) > 8 * 1024 * 1024 + (
                1 << 20
            ):  # 8 MB left, in steps: others write too
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        self.events["disk filled below the watermark"] += 1

    def sample_master(self) -> None:
        with contextlib.suppress(psutil.Error, AttributeError):
            self.master_peak_mb = max(
                self.master_peak_mb, psutil.Process(self.up.pid).memory_info().rss / 2**20
            )

    def chaos(self, minutes: float) -> None:
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            time.sleep(self.rng.uniform(0.1, 1.0))
            self.sample_master()
            roll = self.rng.random()
            if roll < 0.7:
                self.submit()
            elif roll < 0.87:
                self.kill_worker()
            elif roll < 0.91:
                self.kill_master(signal.SIGKILL)
            elif roll < 0.95:
                self.kill_master(signal.SIGINT)
            else:
                self.fill_disk()

    # ------------------------------------------------------------------ the end

    def settle(self, timeout: float) -> float:
        if self.filler is not None:
            self.fill_disk()
        started = time.monotonic()
        pending = set(self.runs)
        while pending:
            if time.monotonic() - started > timeout:
                raise RuntimeError(
                    f"{len(pending)} runs did not end within {timeout}s: {sorted(pending)[:5]}"
                )
            with self.client() as c:
                for run_id in list(pending):
                    if c.get_run(run_id).terminal:
                        pending.discard(run_id)
            time.sleep(1)
        return time.monotonic() - started

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(60)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait()

    def leftovers(self) -> list[str]:
        found = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(MARK) == self.mark:
                    found.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]}")
                    proc.kill()
        return found

    def check_store(self) -> dict[str, int]:
        """The guarantees, from what the store committed."""
        store = SqliteStore(self.data / "titan.db")  # what was committed, read as the master does
        snapshot = Snapshot()
        for run_id in self.runs:  # finished ones are read from the store one by one, live ones too
            found = store.read_run(run_id)
            if found is not None:
                snapshot.runs += found.runs
                snapshot.jobs += found.jobs
                snapshot.attempts += found.attempts
        store.close()
        runs = {row["id"]: row for row in snapshot.runs}
        jobs = {(job.run_id, job.id): job for job in map(Job.from_row, snapshot.jobs)}
        attempts = [Attempt.from_row(row) for row in snapshot.attempts]
        problems: Counter[str] = Counter()
        for run_id in self.runs:
            if runs[run_id]["state"] == "RUNNING":
                problems["run not terminal"] += 1
        succeeded = Counter((a.run_id, a.job_id) for a in attempts if a.state is AttemptState.SUCCEEDED)
        for key, job in jobs.items():
            if succeeded[key] > 1:
                problems["job with two committed results"] += 1
            if (job.state is JobState.SUCCEEDED) != (succeeded[key] == 1):
                problems["SUCCEEDED job without exactly one SUCCEEDED attempt"] += 1
        for a in attempts:
            job = jobs[(a.run_id, a.job_id)]
            committed = max((jobs[(a.run_id, p)].ended_at for p in job.parents), default=0.0)
            if not a.void and a.assigned_at < committed:
                problems["attempt assigned before its parents committed"] += 1
        return {
            "runs": len(self.runs),
            "jobs": sum(1 for k in jobs if k[0] in set(self.runs)),
            "attempts": len(attempts),
            "lost attempts": sum(1 for a in attempts if a.state is AttemptState.LOST),
            "void (handed back before start)": sum(1 for a in attempts if a.void),
            "jobs SUCCEEDED": sum(1 for j in jobs.values() if j.state is JobState.SUCCEEDED),
            "jobs FAILED or UPSTREAM_FAILED": sum(
                1 for j in jobs.values() if j.state in (JobState.FAILED, JobState.UPSTREAM_FAILED)
            ),
            **{f"violation: {k}": v for k, v in problems.items()},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="titan-chaos-"))  # kept when the soak fails: the logs are there
    disk = None
    if os.geteuid() == 0:
        disk = root / "disk"
        disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(disk)], check=True)
    soak = Soak(root, disk, args.seed)
    started = time.monotonic()
    settle = float("nan")
    try:
        soak.start_up()
        for _ in range(2):
            soak.start_worker()
        soak.chaos(args.minutes)
        settle = soak.settle(900)
        soak.sample_master()
    except BaseException:
        print(f"the processes' logs are in {root}", file=sys.stderr)
        raise
    finally:
        try:
            soak.stop()
            left = soak.leftovers()
            found = soak.check_store() if (soak.data / "titan.db").exists() else {}
        finally:
            if disk is not None:
                subprocess.run(["umount", "-l", str(disk)], check=False)
    rows = [(k, str(v), "", "", "") for k, v in sorted(soak.events.items())]
    rows += [(k, str(v), "", "", "0" if k.startswith("violation") else "") for k, v in found.items()]
    rows += [
        ("minutes of chaos", f"{args.minutes:g}", "", "", ""),
        ("seconds to settle after the chaos", f"{settle:.1f}", "", "", ""),
        ("master (up) peak RSS MB", f"{soak.master_peak_mb:.0f}", "", "", ""),
        ("processes left behind", str(len(left)), "", "", "0"),
        ("disk", "512 MB tmpfs, filled and freed" if disk else "not root: not filled", "", "", ""),
        ("wall seconds", f"{time.monotonic() - started:.0f}", "", "", ""),
    ]
    table(f"chaos soak, seed {args.seed}", rows)
    if left or any(k.startswith("violation") for k in found):
        print(f"the processes' logs are in {root}")
        sys.exit(1)
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
