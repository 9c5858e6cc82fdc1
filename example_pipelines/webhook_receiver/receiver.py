"""A receiver for a `provider: webhook` pool: the glue between Titan's autoscaler and your machines.

Each request is checked before anything is done: its signature (HMAC-SHA256 under the pool's
secret, over its timestamp, its delivery id and its body), its timestamp (within five minutes of
this clock), and its delivery id (one already done is answered again, not done twice: a retry
whose answer was lost, or a replay). Then a scale_up starts `titan-runtime <worker_args>` here
with the join token in its environment (never on its command line), and a scale_down stops the
worker started for that launch. A real one would start and delete machines instead.

    python receiver.py --secret-file hook.secret --port 8080

Serve it behind TLS (a reverse proxy with a certificate): a scale_up carries a join token.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from titan_runtime.providers.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Deliveries,
    verify,
)

MAX_BODY = 1024 * 1024


class Receiver:
    def __init__(self, secret: bytes, work_root: Path) -> None:
        self.secret = secret
        self.work_root = work_root
        self.deliveries = Deliveries()
        self.answers: dict[str, dict[str, Any]] = {}  # delivery id -> what it was answered
        self.workers: dict[str, subprocess.Popen[bytes]] = {}  # launch id -> its worker
        self.lock = threading.Lock()

    def handle(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        delivery = headers.get(DELIVERY_HEADER, "")
        if not verify(
            self.secret, body, headers.get(SIGNATURE_HEADER, ""), headers.get(TIMESTAMP_HEADER, ""), delivery
        ):
            return 401, {"error": "bad signature, or a timestamp outside the replay window"}
        with self.lock:
            if not self.deliveries.first_time(delivery):
                return 200, {**self.answers.get(delivery, {}), "duplicate": True}
            payload = json.loads(body)
            answer = self.scale_up(payload) if payload["event"] == "scale_up" else self.scale_down(payload)
            self.answers[delivery] = answer
            return 200, answer

    def scale_up(self, payload: dict[str, Any]) -> dict[str, Any]:
        launch = payload["launch_id"]
        env = dict(os.environ, TITAN_TOKEN=payload["join_token"])
        argv = [
            sys.executable,
            "-m",
            "titan_runtime",
            *payload["worker_args"],
            "--work-dir",
            str(self.work_root / launch),
            *self.tls_files(launch, payload),
        ]
        log = open(self.work_root / f"{launch}.log", "ab")  # noqa: SIM115 - the worker's
        self.workers[launch] = subprocess.Popen(
            argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        return {"instance": f"pid-{self.workers[launch].pid}"}

    def tls_files(self, launch: str, payload: dict[str, Any]) -> list[str]:
        """A master serving TLS sends its CA (and, if it requires one, a client certificate made for
        this launch): into files the worker is pointed at, the key readable by its owner only."""
        if "tls_ca_pem" not in payload:
            return []
        directory = self.work_root / f"{launch}-tls"
        directory.mkdir(mode=0o700, exist_ok=True)
        (directory / "ca.pem").write_text(payload["tls_ca_pem"])
        args = ["--tls-ca", str(directory / "ca.pem")]
        if "tls_cert_pem" in payload:
            (directory / "worker.pem").write_text(payload["tls_cert_pem"])
            key = os.open(directory / "worker-key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(key, "w") as fh:
                fh.write(payload["tls_key_pem"])
            args += [
                "--tls-cert",
                str(directory / "worker.pem"),
                "--tls-key",
                str(directory / "worker-key.pem"),
            ]
        return args

    def scale_down(self, payload: dict[str, Any]) -> dict[str, Any]:
        worker = self.workers.pop(payload["launch_id"], None)
        if worker is not None:
            stop(worker)
        return {}

    def close(self) -> None:
        for worker in self.workers.values():
            stop(worker)


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret-file", type=Path, required=True, help="the pool's secret_file")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument(
        "--work-root", type=Path, default=Path("webhook-workers"), help="workers' work dirs and logs"
    )
    args = parser.parse_args()
    args.work_root.mkdir(parents=True, exist_ok=True)
    receiver = Receiver(args.secret_file.read_text().strip().encode(), args.work_root)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            code, answer = (
                (413, {"error": "too large"})
                if length > MAX_BODY
                else receiver.handle(self.headers, self.rfile.read(length))
            )
            text = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

    server = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening on http://{args.bind}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        receiver.close()


if __name__ == "__main__":
    main()
