"""What a dashboard process is told: where the master is, its own credential, and its own secret."""

from __future__ import annotations

from dataclasses import dataclass

#: Where the dashboard listens unless told: loopback, so nothing on the network reaches it by default.
DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 9091


@dataclass
class DashboardSettings:
    """Everything `create_app` needs. `address`, `token` and `data_dir` resolve as every client's do
    (TITAN_ADDRESS, the data dir's master.json, TITAN_TOKEN, the data dir's token file).

    `token` is the dashboard's own credential: it holds the shared live streams (one watch, one log
    follower per job watched), which a read token is enough for. What a user does and every page
    they read goes through the token they signed in with, so roles hold."""

    address: str | None = None
    token: str | None = None
    data_dir: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Signs session cookies. None: a random key per process (sessions live in the process anyway).
    secret_key: bytes | None = None
    #: The path prefix a reverse proxy serves the dashboard under ("" at the root).
    root_path: str = ""
    #: Finished runs the live cluster view keeps beside the running ones.
    recent_runs: int = 20
    #: Seconds a signed-in session lasts without a request, and at most.
    session_idle: float = 8 * 3600.0
    session_max_age: float = 7 * 24 * 3600.0
    #: How long a page waits for a master that went away before it says so (seconds).
    page_reconnect_timeout: float = 2.0
