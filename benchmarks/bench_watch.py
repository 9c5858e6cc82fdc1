"""What watching a big run costs it: a run of N /bin/true jobs (default 10,000) on 2 workers x 2
slots, submitted with `titan-runtime run --wait` in a terminal (a pty) and piped, against the same
run submitted with `run` and awaited through the SDK (the baseline). Target: the run's own time
(created to ended, as the master records it) <= 5 % longer when watched. The time until the command
returns is shown too: a watcher looks once a second, so it sees the end up to a second late.

The three ways take turns, round after round (`--rounds`, default 2), on one cluster, and the
table gives each way's median: this VM's speed drifts by tens of percent within a minute.

    .venv/bin/python benchmarks/bench_watch.py [--jobs 10000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from _common import Timer, cluster, table


def run_cli(c, args: list[str], tty: bool) -> str:  # type: ignore[no-untyped-def]
    """`titan-runtime ARGS` against the cluster; its stdout a pty (read as it comes) or a pipe."""
    command = [sys.executable, "-m", "titan_runtime", *args]
    if not tty:
        out = subprocess.run(command, env=c.env(), cwd=c.root, capture_output=True, text=True, check=False)
        return out.stdout
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, env=c.env(), cwd=c.root, stdout=follower, stderr=subprocess.DEVNULL)
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the pty is closed once the command has exited
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc.wait()
    reader.join(5)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    known = parser.parse_args()
    ways = ("SDK wait (baseline)", "run --wait, piped", "run --wait, terminal")
    times: dict[str, list[float]] = {way: [] for way in ways}
    walls: dict[str, list[float]] = {way: [] for way in ways}
    lines: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, cluster([("w1", 2), ("w2", 2)]) as c:
        pipeline = Path(tmp) / "many.yaml"
        body = "\n".join(f"  - {{id: j{i}, command: [/bin/true]}}" for i in range(known.jobs))
        pipeline.write_text(f"name: many\njobs:\n{body}\n")
        for _ in range(known.rounds):
            for way in ways:
                with Timer() as t:
                    if way.startswith("SDK"):
                        run_id = run_cli(c, ["run", str(pipeline)], tty=False).strip()
                        assert c.client.wait_run(run_id).state == "SUCCEEDED"
                    else:
                        out = run_cli(c, ["run", "--wait", str(pipeline)], tty=way.endswith("terminal"))
                        lines[way] = out.count("\n")
                        run_id = out.splitlines()[0].strip()
                record = c.client.get_run(run_id, jobs=())
                assert record.state == "SUCCEEDED", record.reason
                times[way].append(record.ended_at - record.created_at)  # the run's own time
                walls[way].append(t.seconds)
    rows = []
    for what, measured, target in (
        ("run's time", times, "<= 1.05"),
        ("until the command returns", walls, ""),
    ):
        base = statistics.median(measured[ways[0]])
        for way in ways:
            median = statistics.median(measured[way])
            rows.append(
                (
                    f"{way}: {what}, s",
                    f"{median:.2f}",
                    f"{base:.2f}",
                    f"{median / base:.3f}",
                    target if way != ways[0] else "",
                )
            )
    rows.append(("lines printed, piped", str(lines.get(ways[1], 0)), "", "", "not one per job"))
    table(
        f"a run of {known.jobs:,} /bin/true jobs on 2 workers x 2 slots, watched three ways "
        f"(median of {known.rounds} rounds, taking turns)",
        rows,
    )


if __name__ == "__main__":
    main()
