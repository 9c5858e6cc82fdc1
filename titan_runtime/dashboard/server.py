"""Serving the dashboard with uvicorn: in the foreground (`titan-runtime dashboard`), or in a thread
of another process (`start_in_thread`, for `titan-runtime up` and tests).

It binds loopback unless told otherwise. Like the master, it refuses to listen on anything else
without TLS (`https_cert`/`https_key`) unless told `insecure` (behind a proxy that terminates TLS,
or a network you trust): people type tokens into its sign-in form.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from titan_runtime.dashboard.app import create_app
from titan_runtime.dashboard.settings import DEFAULT_BIND, DEFAULT_PORT, DashboardSettings


class DashboardError(Exception):
    """The dashboard cannot start as asked; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(bind: str, https: bool, insecure: bool) -> None:
    if not is_loopback(bind) and not https and not insecure:
        raise DashboardError(
            f"refusing to serve the dashboard on {bind} without TLS: sign-in sends tokens. Give "
            "--https-cert and --https-key, or --insecure behind a proxy that serves https (or on a "
            "network you trust)"
        )


def listen(bind: str, port: int) -> socket.socket:
    """The listening socket, made here so that a port in use fails the caller at once."""
    host = bind.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise DashboardError(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


def _server(
    settings: DashboardSettings,
    https_cert: str | None,
    https_key: str | None,
    log_level: str,
) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings),
        log_level=log_level,
        access_log=False,
        proxy_headers=True,  # X-Forwarded-Proto from a proxy on this host: https, so Secure cookies
        root_path=settings.root_path,
        ssl_certfile=https_cert,
        ssl_keyfile=https_key,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    return uvicorn.Server(config)


def url_of(sock: socket.socket, https: bool) -> str:
    """Where it listens. With a root path, that is what the proxy forwards to (without the prefix:
    the proxy strips it, and the pages' links put it back)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if https else 'http'}://{shown}:{port}/"


def serve(
    settings: DashboardSettings,
    bind: str = DEFAULT_BIND,
    port: int = DEFAULT_PORT,
    https_cert: str | None = None,
    https_key: str | None = None,
    insecure: bool = False,
    log_level: str = "warning",
    started: object = None,
) -> None:
    """Serve in the foreground until interrupted (Ctrl-C, SIGTERM). `started(url)` is called once
    it listens."""
    check_bind(bind, bool(https_cert), insecure)
    sock = listen(bind, port)
    if callable(started):
        started(url_of(sock, bool(https_cert)))
    # uvicorn shuts down gracefully on SIGTERM, then raises it again: end as a stop asked for, 0.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        _server(settings, https_cert, https_key, log_level).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)


@dataclass
class RunningDashboard:
    """A dashboard serving in a thread of this process."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_in_thread(
    settings: DashboardSettings,
    bind: str = DEFAULT_BIND,
    port: int = DEFAULT_PORT,
    https_cert: str | None = None,
    https_key: str | None = None,
    insecure: bool = False,
    log_level: str = "warning",
    timeout: float = 20.0,
) -> RunningDashboard:
    """Serve the dashboard from a daemon thread; returns once it answers (port 0: any free port,
    see `.url`). `stop()` ends it. For `titan-runtime up`, which serves it beside its cluster."""
    check_bind(bind, bool(https_cert), insecure)
    sock = listen(bind, port)
    server = _server(settings, https_cert, https_key, log_level)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="titan-dashboard", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:  # uvicorn says so once its lifespan has started and it listens
        if not thread.is_alive():
            sock.close()
            raise DashboardError("the dashboard stopped while starting (see its log)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise DashboardError(f"the dashboard did not start within {timeout:.0f}s")
        time.sleep(0.02)  # polling a flag another thread sets, with a deadline
    return RunningDashboard(url_of(sock, bool(https_cert)), server, thread)
