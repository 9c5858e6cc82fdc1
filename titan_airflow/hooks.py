"""`TitanHook`: the Airflow connection of type `titan`, turned into Titan SDK clients.

A `titan` connection holds the master's host and port and, in its password field, the cluster
token; for a master serving TLS, its extra holds the paths `tls_ca` (and `tls_cert`, `tls_key` for
a master that requires client certificates). The hook is the one place that reads it, so the
operator (sync client, in the worker) and the trigger (async client, in the triggerer) always
agree on where the master is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from titan_airflow.errors import TitanConnectionConfigError
from titan_runtime import AsyncTitanClient, TitanClient
from titan_runtime.config import DEFAULT_PORT, join_host_port

CONN_TYPE = "titan"
DEFAULT_CONN_ID = "titan_default"


@dataclass(frozen=True)
class TitanSettings:
    """Where the master is and which token to present (None: the SDK's own lookup: TITAN_TOKEN, token file)."""

    address: str | None
    token: str | None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    # The operator and the trigger reconnect themselves (for RECONNECT_FOR_S, logging each lost
    # stream in the task log), so the SDK's own retries are off here rather than stacked on theirs.

    def client(self) -> TitanClient:
        return TitanClient(address=self.address, token=self.token, reconnect_timeout=0, **self._tls())

    def async_client(self) -> AsyncTitanClient:
        return AsyncTitanClient(address=self.address, token=self.token, reconnect_timeout=0, **self._tls())

    def _tls(self) -> dict[str, str | None]:
        return {"tls_ca": self.tls_ca, "tls_cert": self.tls_cert, "tls_key": self.tls_key}


def settings_from_connection(conn: Any) -> TitanSettings:
    """Host, port and password of an Airflow connection as Titan client settings."""
    host = (conn.host or "").strip()
    for scheme in ("grpc://", "titan://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    host = host.rstrip("/")
    if "/" in host:
        raise TitanConnectionConfigError(
            f"connection {conn.conn_id!r}: host {conn.host!r} is not a host name; "
            "put the master's host (e.g. 127.0.0.1) in Host and its port in Port"
        )
    port = conn.port
    if "," in host:  # masters sharing a store (docs/ha.md): each HOST[:PORT], Port the default
        parts = [part.strip() for part in host.split(",") if part.strip()]
        address = ",".join(
            part if part.rpartition(":")[2].isdigit() else join_host_port(part, int(port or DEFAULT_PORT))
            for part in parts
        )
        return _settings(conn, address)
    if not port and host.count(":") == 1:
        # "host:port" typed into the host field
        host, _, raw_port = host.partition(":")
        if not raw_port.isdigit():
            raise TitanConnectionConfigError(
                f"connection {conn.conn_id!r}: cannot read a port from host {conn.host!r}; use the Port field"
            )
        port = int(raw_port)
    return _settings(conn, join_host_port(host or "127.0.0.1", int(port or DEFAULT_PORT)))


def _settings(conn: Any, address: str) -> TitanSettings:
    extra = getattr(conn, "extra_dejson", None) or {}
    tls = {name: extra.get(name) or None for name in ("tls_ca", "tls_cert", "tls_key")}
    return TitanSettings(address=address, token=conn.password or None, **tls)


def missing_connection_error(conn_id: str) -> TitanConnectionConfigError:
    return TitanConnectionConfigError(
        f"the Airflow connection {conn_id!r} is not defined. Create a connection of type 'titan' with "
        "the master's host and port and the cluster token as password, for example "
        f'AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "titan", "host": "127.0.0.1", '
        '"port": 9090, "password": "<contents of the master\'s DATA_DIR/token>"}\''
    )


class TitanHook(BaseHook):
    """Clients for the Titan master named by an Airflow connection of type `titan`.

    With the default connection id and no such connection defined, the hook falls back to the
    SDK's own lookup (TITAN_ADDRESS / TITAN_HOST+TITAN_PORT, TITAN_TOKEN, the token file), so a
    single-machine setup works without configuration. Any other missing connection is an error.
    """

    conn_name_attr = "titan_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Titan"

    def __init__(self, titan_conn_id: str | None = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.titan_conn_id = titan_conn_id

    # ------------------------------------------------------------------ settings

    def settings(self) -> TitanSettings:
        if not self.titan_conn_id:
            return TitanSettings(address=None, token=None)
        try:
            conn = self.get_connection(self.titan_conn_id)
        except AirflowNotFoundException:
            return self._fallback()
        return settings_from_connection(conn)

    async def asettings(self) -> TitanSettings:
        """`settings()` for the triggerer's event loop (never blocks it)."""
        if not self.titan_conn_id:
            return TitanSettings(address=None, token=None)
        try:
            conn = await self.aget_connection(self.titan_conn_id)
        except AirflowNotFoundException:
            return self._fallback()
        return settings_from_connection(conn)

    def _fallback(self) -> TitanSettings:
        if self.titan_conn_id != DEFAULT_CONN_ID:
            raise missing_connection_error(str(self.titan_conn_id))
        self.log.info(
            "No Airflow connection %r: using TITAN_ADDRESS/TITAN_TOKEN or the local token file",
            DEFAULT_CONN_ID,
        )
        return TitanSettings(address=None, token=None)

    # ------------------------------------------------------------------ clients

    def get_conn(self) -> TitanClient:
        """A blocking `TitanClient`; close it (or use it in a `with` block) when done."""
        return self.settings().client()

    async def get_async_conn(self) -> AsyncTitanClient:
        """An `AsyncTitanClient`; create and use it in the same event loop, then `await close()`."""
        return (await self.asettings()).async_client()

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's Test button: can we reach the master and does it accept the token?"""
        try:
            with self.get_conn() as client:
                workers = client.list_workers()
        except Exception as exc:
            return False, str(exc)
        alive = sum(1 for w in workers if w.state == "ALIVE")
        return True, f"Connected to Titan at {client.address}: {alive} worker(s) alive"
