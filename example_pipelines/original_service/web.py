"""Serves the report the pipeline produced, on the service's fixed port."""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from titan_runtime import task

report = task.get_artifact("report.json", "report.json").read_bytes()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(report)


print(f"web: serving the report on port {os.environ['PORT']}", flush=True)
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
