"""Where to find the master and how to prove who we are: one resolution order everywhere.

Address: explicit argument, else TITAN_ADDRESS, else TITAN_HOST/TITAN_PORT, else the address of the
master running from the data dir (its master.json), else 127.0.0.1:9090.
Token: explicit argument, else TITAN_TOKEN, else the file `token` in the data dir
(explicit, else TITAN_DATA_DIR, else ~/.titan).
Reconnect timeout: explicit argument, else TITAN_RECONNECT_TIMEOUT, else 60 seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090
DEFAULT_RECONNECT_TIMEOUT = 60.0


class ConfigError(Exception):
    """Bad configuration; the message says what to change."""


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    raw = explicit or os.environ.get("TITAN_DATA_DIR") or "~/.titan"
    return Path(raw).expanduser()


def address(explicit: str | None = None, data_dir_path: str | os.PathLike[str] | None = None) -> str:
    """The master's address: the argument, else TITAN_ADDRESS (or TITAN_HOST/TITAN_PORT), else the
    master running from this machine's data dir (its master.json, so that `up --port P` is found
    without flags), else 127.0.0.1:9090."""
    if explicit:
        return explicit
    if os.environ.get("TITAN_ADDRESS"):
        return os.environ["TITAN_ADDRESS"]
    if not (os.environ.get("TITAN_HOST") or os.environ.get("TITAN_PORT")):
        running = running_master(data_dir(data_dir_path))
        if running:
            return running
    host = os.environ.get("TITAN_HOST") or DEFAULT_HOST
    port = os.environ.get("TITAN_PORT") or str(DEFAULT_PORT)
    return join_host_port(host, int(port))


def running_master(directory: Path) -> str | None:
    """The address in the data dir's master.json while the master that wrote it is alive (a master
    killed outright leaves the file behind: its pid is gone, and it is ignored)."""
    try:
        ready = json.loads((directory / "master.json").read_text())
        pid, found = int(ready["pid"]), str(ready["address"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return found


def token(explicit: str | None = None, data_dir_path: str | os.PathLike[str] | None = None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("TITAN_TOKEN"):
        return os.environ["TITAN_TOKEN"]
    path = data_dir(data_dir_path) / "token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def reconnect_timeout(explicit: float | None = None) -> float:
    """Seconds a client keeps trying a master it has lost (a restart) before it gives up."""
    if explicit is not None:
        value, source = explicit, "reconnect_timeout"
    elif os.environ.get("TITAN_RECONNECT_TIMEOUT"):
        raw, source = os.environ["TITAN_RECONNECT_TIMEOUT"], "TITAN_RECONNECT_TIMEOUT"
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{source}={raw!r} is not a number of seconds, for example 60") from None
    else:
        return DEFAULT_RECONNECT_TIMEOUT
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"{source} must be 0 (do not retry) or more seconds, not {value!r}")
    return float(value)


def join_host_port(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def split_host_port(addr: str) -> tuple[str, int]:
    """Parse HOST:PORT (IPv6 as [::1]:PORT); raise ConfigError with an example when malformed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid address {addr!r}: expected HOST:PORT, for example 127.0.0.1:9090")
    return host.strip("[]"), int(port)


def start_worker(argv: list[str], token: str, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `titan-runtime worker` (`argv`, its options last) with `token` handed over through an
    inherited pipe (`--token-fd`): never on its command line (other users read those in `ps`) and
    never in its environment (any process of its user, its jobs included, reads that in
    /proc/PID/environ for as long as it runs). `popen`: stdout, stderr and the like."""
    import subprocess  # here: every client imports this module, few start workers

    read, write = os.pipe()
    try:
        os.write(write, token.encode())  # a token is far below a pipe's buffer
        os.close(write)
        env = {name: value for name, value in os.environ.items() if name != "TITAN_TOKEN"}
        return subprocess.Popen(
            [*argv, "--token-fd", str(read)], env=env, pass_fds=(read,), stdin=subprocess.DEVNULL, **popen
        )
    finally:
        os.close(read)


def read_token_fd(fd: int) -> str:
    with os.fdopen(fd, "rb") as fh:
        return fh.read(65536).decode().strip()


def peer_host(peer: str) -> str:
    """gRPC's peer ("ipv4:10.0.0.5:51234", "ipv6:[::1]:51234", "unix:/path") without its port."""
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return address.rsplit(":", 1)[0].strip("[]")
    return peer


def writable_dir(path: Path, what: str = "data dir") -> Path:
    """Create `path` if needed, private to its owner (0700, whatever the umask: it holds the token,
    the store with every job's env, the jobs' workspaces), and prove we can write in it, or raise
    ConfigError saying so."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
        import tempfile  # here: every client imports this module, few make a data dir

        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"the {what} {path} cannot be written ({exc.strerror or exc}); "
            "choose another with --data-dir or fix its permissions"
        ) from None
    return path
