"""Cold start: `titan-runtime up` to the first job's result, target <= 1.5 s (Ray: 7-10 s here).
Baseline: the bare cost of starting the CLI's Python (`titan-runtime --version`).

Titan's modules are compiled to bytecode first, as `pip install` does for an installed package: an
editable install run with PYTHONDONTWRITEBYTECODE=1 (some sandboxes set it) would otherwise compile
them at every start, about 0.3 s more on a slow VM."""

from __future__ import annotations

import compileall
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Timer, median, table

import titan_runtime
from titan_runtime import TitanClient, TitanConnectionError, TitanJob, Unauthenticated

RUNS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        start = time.perf_counter()
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "titan_runtime",
                "up",
                "--port",
                str(port),
                "--data-dir",
                tmp,
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    token = Path(tmp, "token").read_text().strip()
                    client = TitanClient(address=f"127.0.0.1:{port}", token=token)
                    job = client.submit_job(TitanJob(command=["true"]))
                    break
                except (OSError, TitanConnectionError, Unauthenticated):
                    time.sleep(0.005)
            assert client.wait(job, 30).state == "SUCCEEDED"
            elapsed = time.perf_counter() - start
            client.close()
            return elapsed
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(30)


def main() -> None:
    compileall.compile_dir(Path(titan_runtime.__file__).parent, quiet=1)
    base = []
    for _ in range(RUNS):
        with Timer() as t:
            subprocess.run(
                [sys.executable, "-m", "titan_runtime", "--version"], check=True, capture_output=True
            )
        base.append(t.seconds)
    titan = [cold_start() for _ in range(RUNS)]
    table(
        f"cold start, median of {RUNS}: `up` to the first job's result",
        [
            (
                "seconds",
                f"{median(titan):.2f}",
                f"{median(base):.2f}",
                f"{median(titan) / median(base):.1f}",
                "<= 1.5 s",
            )
        ],
    )


if __name__ == "__main__":
    main()
