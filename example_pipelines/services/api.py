"""A tiny HTTP API: GET /hello answers JSON, GET /healthz answers 200 (or 503 while the file named
by $UNHEALTHY_FLAG exists). It listens on the port Titan leased to it ($PORT)."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ["PORT"])
VERSION = os.environ.get("API_VERSION", "v1")
FLAG = os.environ.get("UNHEALTHY_FLAG", "")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            sick = bool(FLAG) and os.path.exists(FLAG)
            self._send(503 if sick else 200, {"ok": not sick})
        elif self.path == "/hello":
            self._send(
                200, {"hello": "from the api", "version": VERSION, "worker": os.environ["TITAN_WORKER_NAME"]}
            )
        else:
            self._send(404, {"error": self.path})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)


print(f"api {VERSION} listening on port {PORT}", flush=True)
ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
