"""SSH provider: turn a machine you can SSH into into a Titan worker (paramiko).

`bootstrap` connects with strict host-key checking (trust on first use only when asked), checks the
remote Python, creates a virtualenv in the remote directory (default `~/.titan-worker`), uploads
the wheel of this very titan-runtime by SFTP (and, with a wheelhouse, its dependencies, installed
with --no-index), writes the token into a mode-0600 file (never on a command line, never logged),
and starts `titan-runtime worker` detached (setsid + nohup) with its log on the host. Every
failure is a `SshError` whose message says what went wrong (the remote error verbatim) and what
to do. `--tunnel` gives hosts that cannot reach the master a way in: an SSH reverse forward from
a port on the host's loopback to the master, alive as long as this side's SSH connection.
Connecting, host keys and the tunnel are in ssh_connection.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import paramiko

from titan_runtime.providers.base import LaunchRequest, Provider, ProviderError, quantity_args
from titan_runtime.providers.ssh_connection import (  # noqa: F401 - this module's public names too
    KNOWN_HOSTS,
    ReverseTunnel,
    SshError,
    SshTarget,
    _dir_expr,
    connect,
    run,
)
from titan_runtime.providers.wheel import build_wheel
from titan_runtime.tls import ClientTls
from titan_runtime.version import __version__

log = logging.getLogger("titan.providers.ssh")

DEFAULT_REMOTE_DIR = "~/.titan-worker"
MIN_PYTHON = (3, 10)


# ---------------------------------------------------------------- bootstrap


@dataclass
class BootstrapOptions:
    target: SshTarget
    master: str  # the master's address as this side sees it (the tunnel's far end)
    token: str
    data_dir: Path  # known_hosts and the wheel cache live here
    name: str = ""
    tags: tuple[str, ...] = ()
    slots: int | None = None
    # What the worker offers (its --cpus, --memory, --gpus); None: what it detects on the host.
    cpus: int | None = None
    memory_mb: int | None = None
    gpus: tuple[str, ...] | None = None
    key: str | None = None
    python: str = "python3"
    accept_new_host_key: bool = False
    wheelhouse: Path | None = None
    tunnel: bool = False
    master_address: str = ""  # how the host reaches the master, when it differs from `master`
    remote_dir: str = DEFAULT_REMOTE_DIR
    connect_timeout: float = 10.0
    pool: str = ""
    provider: str = "ssh"
    launch_id: str = ""
    worker_args: tuple[str, ...] = ()
    tls: ClientTls | None = None  # the master serves TLS: its CA (and a client certificate) go along


@dataclass
class Bootstrapped:
    """A started remote worker. Keep `client` open while `tunnel` is in use."""

    target: SshTarget
    name: str
    pid: int
    remote_dir: str
    master: str  # what the worker dials
    timings: dict[str, float] = field(default_factory=dict)
    client: paramiko.SSHClient | None = None
    tunnel: ReverseTunnel | None = None

    @property
    def log_path(self) -> str:
        return f"{self.remote_dir}/worker.log"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _check_python(client: paramiko.SSHClient, target: SshTarget, python: str) -> str:
    script = (
        f"PY={shlex.quote(python)}; "
        'command -v "$PY" >/dev/null 2>&1 || { echo "not found" >&2; exit 127; }; '
        '"$PY" -c "import sys; print(\'%d.%d.%d\' % sys.version_info[:3])"'
    )
    code, out, err = run(client, script, 60)
    if code != 0:
        raise SshError(
            f"no Python at {python!r} on {target.host} ({(err or out).strip() or f'exit {code}'}): install Python "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later there, or pass --python PATH"
        )
    version = out.strip()
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_PYTHON:
        raise SshError(
            f"{python} on {target.host} is Python {version}; titan-runtime needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} "
            "or later: pass --python PATH to a newer one"
        )
    return version


def _upload(sftp: paramiko.SFTPClient, local: Path, remote: str) -> bool:
    """Upload unless the host already has a file of that name and size. True if uploaded."""
    size = local.stat().st_size
    try:
        if sftp.stat(remote).st_size == size:
            return False
    except OSError:
        pass
    sftp.put(str(local), remote + ".part")
    sftp.posix_rename(remote + ".part", remote)
    return True


def _write_file(sftp: paramiko.SFTPClient, remote: str, data: str | bytes, mode: int = 0o600) -> None:
    """Write a file whole (renamed into place), with its mode set before anything goes in: 0600
    by default, for the token and keys."""
    with sftp.open(remote + ".part", "w") as fh:
        fh.chmod(mode)
        fh.write(data + "\n" if isinstance(data, str) else data)
    sftp.posix_rename(remote + ".part", remote)


def _upload_tls(sftp: paramiko.SFTPClient, remote_dir: str, tls: ClientTls) -> list[str]:
    """Copy the CA (and a client certificate and its key, 0600) into REMOTE_DIR/tls; the worker's
    options that name them there."""
    with contextlib.suppress(OSError):
        sftp.mkdir(f"{remote_dir}/tls", 0o700)
    remote = f"{remote_dir}/tls"
    args = ["--tls-ca", f"{remote}/ca.pem"]
    _write_file(sftp, f"{remote}/ca.pem", Path(tls.ca).read_bytes(), 0o644)
    if tls.cert:
        _write_file(sftp, f"{remote}/worker.pem", Path(tls.cert).read_bytes(), 0o644)
        _write_file(sftp, f"{remote}/worker-key.pem", Path(tls.key).read_bytes())
        args += ["--tls-cert", f"{remote}/worker.pem", "--tls-key", f"{remote}/worker-key.pem"]
    return args


def worker_argv(
    options: BootstrapOptions, name: str, master: str, remote_dir: str, tls_args: list[str]
) -> list[str]:
    """The remote `titan-runtime worker` arguments: what it dials, who it is, and what it offers
    (--cpus, --memory, --gpus when given: the worker then advertises exactly that)."""
    args = [
        "worker",
        "--master",
        master,
        "--name",
        name,
        "--data-dir",
        remote_dir,
        "--work-dir",
        f"{remote_dir}/work",
        "--provider",
        options.provider,
    ]
    if options.pool:
        args += ["--pool", options.pool]
    if options.launch_id:
        args += ["--launch-id", options.launch_id]
    if options.tags:
        args += ["--tags", ",".join(options.tags)]
    if options.slots:
        args += ["--slots", str(options.slots)]
    args += quantity_args(options.cpus, options.memory_mb, options.gpus)
    return [*args, *tls_args, *options.worker_args]


def bootstrap(options: BootstrapOptions) -> Bootstrapped:
    """Install titan-runtime on the host and start a worker there. Raises SshError."""
    target = options.target
    timings: dict[str, float] = {}
    started = time.monotonic()
    wheel = build_wheel(options.data_dir / "wheels")
    client = connect(
        target, options.data_dir, options.key, options.accept_new_host_key, options.connect_timeout
    )
    keep_open = False
    try:
        timings["connect"] = time.monotonic() - started
        mark = time.monotonic()
        python_version = _check_python(client, target, options.python)
        code, out, err = run(
            client,
            f"mkdir -p {_dir_expr(options.remote_dir)}/wheels && cd {_dir_expr(options.remote_dir)} && pwd",
        )
        if code != 0:
            raise SshError(f"cannot create {options.remote_dir} on {target.host}: {(err or out).strip()}")
        remote_dir = out.strip().splitlines()[-1]
        sftp = client.open_sftp()
        try:
            _upload(sftp, wheel, f"{remote_dir}/wheels/{wheel.name}")
            index = ""
            if options.wheelhouse is not None:
                if not options.wheelhouse.is_dir():
                    raise SshError(f"--wheelhouse {options.wheelhouse} is not a directory")
                found = sorted(
                    p for p in options.wheelhouse.glob("*.whl") if not p.name.startswith("titan_runtime-")
                )
                for path in found:
                    _upload(sftp, path, f"{remote_dir}/wheels/{path.name}")
                index = "--no-index --find-links wheels"
            install = _install_script(wheel, python_version, options.python, index)
            code, out, err = run(client, f"cd {shlex.quote(remote_dir)} && {install}", 900)
            if code != 0:
                raise SshError(_install_failure(target, code, out, err, options.wheelhouse is not None))
            timings["install"] = time.monotonic() - mark
            mark = time.monotonic()
            _write_file(sftp, f"{remote_dir}/token", options.token)
            tls_args = _upload_tls(sftp, remote_dir, options.tls) if options.tls is not None else []
            tunnel = None
            master = options.master_address or options.master
            if options.tunnel:
                tunnel = ReverseTunnel(client, options.master)
                master = f"127.0.0.1:{tunnel.port}"
                keep_open = True
            name = options.name or target.host
            args = worker_argv(options, name, master, remote_dir, tls_args)
            meta = {
                "name": name,
                "master": master,
                "tags": list(options.tags),
                "version": __version__,
                "pool": options.pool,
                "launch_id": options.launch_id,
                "tunnel": options.tunnel,
                "started_at": time.time(),
            }
            with sftp.open(f"{remote_dir}/worker.json", "w") as fh:
                fh.write(json.dumps(meta) + "\n")
        finally:
            sftp.close()
        start = (
            f"cd {shlex.quote(remote_dir)} && "
            'if [ -f worker.pid ] && kill -0 "$(cat worker.pid)" 2>/dev/null; then '
            'echo "a worker already runs here (pid $(cat worker.pid))" >&2; exit 17; fi; '
            f"nohup setsid venv/bin/titan-runtime {' '.join(shlex.quote(a) for a in args)} "
            ">> worker.log 2>&1 < /dev/null & echo $! > worker.pid; cat worker.pid"
        )
        code, out, err = run(client, start, 60)
        if code == 17:
            raise SshError(
                f"{err.strip()} on {target.host} in {remote_dir}: stop it first with "
                f"`titan-runtime ssh stop {target}`"
            )
        if code != 0 or not out.strip().isdigit():
            raise SshError(
                f"starting the worker on {target.host} failed (exit {code}): {(err or out).strip()}"
            )
        timings["start"] = time.monotonic() - mark
        return Bootstrapped(
            target,
            name,
            int(out.strip()),
            remote_dir,
            master,
            timings,
            client if keep_open else None,
            tunnel,
        )
    finally:
        if not keep_open:
            client.close()


def _install_script(wheel: Path, python_version: str, python: str, index: str) -> str:
    """Create the venv if needed; install the wheel (and its dependencies) unless it is installed."""
    marker = f"{wheel.parent.name}-{python_version}"
    pip = "venv/bin/python -m pip install --disable-pip-version-check --no-input --quiet"
    return (
        f"if [ ! -x venv/bin/python ]; then {shlex.quote(python)} -m venv venv || exit 31; fi; "
        f'if [ "$(cat venv/.titan-wheel 2>/dev/null)" != {shlex.quote(marker)} ]; then '
        f"{pip} {index} wheels/{wheel.name} || exit 32; "
        f"{pip} --no-deps --force-reinstall wheels/{wheel.name} || exit 32; "
        f"echo {shlex.quote(marker)} > venv/.titan-wheel; fi"
    )


def _install_failure(target: SshTarget, code: int, out: str, err: str, wheelhouse: bool) -> str:
    text = (err.strip() or out.strip())[-3000:]
    if code == 31:
        return (
            f"creating a virtualenv on {target.host} failed:\n{text}\n"
            "Install the venv module there (Debian/Ubuntu: apt-get install python3-venv), or pass --python "
            "to a Python that has it"
        )
    hint = (
        "the wheelhouse lacks a wheel the host needs: rebuild it with `titan-runtime ssh wheelhouse DIR` "
        "on a machine with the same Python version and platform as the host"
        if wheelhouse
        else "the host needs access to a package index, or pass --wheelhouse DIR with the dependencies' "
        "wheels (make one with `titan-runtime ssh wheelhouse DIR`)"
    )
    return f"pip install failed on {target.host} (exit {code}):\n{text}\n{hint}"


# ---------------------------------------------------------------- status, logs, stop


def remote_status(client: paramiko.SSHClient, remote_dir: str) -> dict[str, Any]:
    """What runs in the remote directory: {running, pid, meta, log_bytes, dir}."""
    script = (
        f"cd {_dir_expr(remote_dir)} 2>/dev/null || {{ echo NODIR; exit 0; }}; pwd; "
        'pid=$(cat worker.pid 2>/dev/null); echo "pid=$pid"; '
        'if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo running=1; else echo running=0; fi; '
        'echo "log=$(wc -c < worker.log 2>/dev/null || echo 0)"; cat worker.json 2>/dev/null'
    )
    _, out, _ = run(client, script, 60)
    lines = out.splitlines()
    if not lines or lines[0] == "NODIR":
        return {"running": False, "pid": 0, "meta": {}, "log_bytes": 0, "dir": remote_dir, "installed": False}
    values = dict(line.split("=", 1) for line in lines[1:4] if "=" in line)
    meta: dict[str, Any] = {}
    if len(lines) > 4:
        try:
            meta = json.loads(lines[4])
        except ValueError:
            meta = {}
    return {
        "running": values.get("running") == "1",
        "pid": int(values["pid"]) if values.get("pid", "").isdigit() else 0,
        "meta": meta,
        "log_bytes": int(values["log"].strip()) if values.get("log", "").strip().isdigit() else 0,
        "dir": lines[0],
        "installed": True,
    }


def remote_log_tail(client: paramiko.SSHClient, remote_dir: str, lines: int = 50) -> str:
    _, out, _ = run(client, f"tail -n {int(lines)} {_dir_expr(remote_dir)}/worker.log 2>/dev/null", 60)
    return out


def remote_stop(client: paramiko.SSHClient, remote_dir: str, now: bool = False, timeout: float = 60.0) -> str:
    """Stop the remote worker by its pid: SIGTERM drains it (SIGINT with `now`); SIGKILL after `timeout`.
    Returns what happened, in words."""
    sig = "INT" if now else "TERM"
    rounds = max(1, int(timeout / 0.2))
    script = (
        f"cd {_dir_expr(remote_dir)} 2>/dev/null || {{ echo none; exit 0; }}; "
        "pid=$(cat worker.pid 2>/dev/null); "
        'if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then echo none; exit 0; fi; '
        f'kill -{sig} "$pid"; i=0; while kill -0 "$pid" 2>/dev/null; do '
        f'i=$((i+1)); if [ $i -gt {rounds} ]; then kill -KILL "$pid"; echo "killed $pid"; exit 0; fi; sleep 0.2; done; '
        'echo "stopped $pid"'
    )
    _, out, _ = run(client, script, timeout + 30)
    return out.strip() or "none"


# ---------------------------------------------------------------- the pool provider


class SshPoolProvider(Provider):
    """Workers on a fixed list of SSH hosts, one per host, bootstrapped on demand."""

    settings_keys: ClassVar[dict[str, type]] = {
        "hosts": list,
        "key": str,
        "python": str,
        "accept_new_host_key": bool,
        "tunnel": bool,
        "master_address": str,
        "wheelhouse": str,
        "remote_dir": str,
        "connect_timeout": float,
        "worker_args": list,
    }
    register_timeout: ClassVar[float] = 600.0  # a bootstrap installs a virtualenv

    @classmethod
    def check(cls, settings: dict[str, Any], values: dict[str, Any], where: str) -> list[str]:
        """Hosts are USER@HOST[:PORT], and a pool has at most one worker per host (its max
        defaults to its number of hosts)."""
        errors = []
        hosts = settings.get("hosts") or []
        if not hosts:
            errors.append(f"{where}.hosts: required for provider ssh: a list of USER@HOST[:PORT]")
        for host in hosts:
            if "@" not in host:
                errors.append(f"{where}.hosts: {host!r} is not USER@HOST[:PORT]")
        values.setdefault("max", len(hosts) or 1)
        if hosts and values["max"] > len(hosts):
            errors.append(
                f"{where}.max: {values['max']} is more than its {len(hosts)} host(s): one worker per host"
            )
        return errors

    @classmethod
    def from_pool(cls, name: str, settings: dict[str, Any], data_dir: Path) -> SshPoolProvider:
        return cls(settings, data_dir)

    def __init__(self, settings: dict[str, Any], data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.hosts = [SshTarget.parse(h) for h in settings["hosts"]]
        self.in_use: dict[str, SshTarget] = {}  # launch id -> host
        self.started: dict[str, Bootstrapped] = {}

    def _connect(self, target: SshTarget) -> paramiko.SSHClient:
        return connect(
            target,
            self.data_dir,
            self.settings.get("key"),
            bool(self.settings.get("accept_new_host_key")),
            float(self.settings.get("connect_timeout", 10.0)),
        )

    async def launch(self, request: LaunchRequest) -> None:
        busy = set(self.in_use.values())
        free = [h for h in self.hosts if h not in busy]
        if not free:
            raise ProviderError(f"all {len(self.hosts)} host(s) of pool {request.pool} already run a worker")
        target = free[0]
        self.in_use[request.launch_id] = target
        options = BootstrapOptions(
            target=target,
            master=request.master,
            token=request.token,
            data_dir=self.data_dir,
            name=request.launch_id,
            tags=request.tags,
            slots=request.slots,
            cpus=request.cpus,
            memory_mb=request.memory_mb,
            gpus=request.gpus,
            key=self.settings.get("key"),
            python=self.settings.get("python", "python3"),
            accept_new_host_key=bool(self.settings.get("accept_new_host_key")),
            wheelhouse=Path(self.settings["wheelhouse"]) if self.settings.get("wheelhouse") else None,
            tunnel=bool(self.settings.get("tunnel")),
            master_address=self.settings.get("master_address", ""),
            remote_dir=self.settings.get("remote_dir", DEFAULT_REMOTE_DIR),
            connect_timeout=float(self.settings.get("connect_timeout", 10.0)),
            pool=request.pool,
            launch_id=request.launch_id,
            worker_args=tuple(self.settings.get("worker_args", ())),
            tls=request.tls,
        )
        try:
            done = await asyncio.to_thread(bootstrap, options)
        except BaseException:
            self.in_use.pop(request.launch_id, None)
            raise
        self.started[request.launch_id] = done
        log.info("bootstrapped %s on %s (pid %d)", request.launch_id, target, done.pid)

    async def retire(self, launch_id: str, reason: str, force: bool) -> None:
        target = self.in_use.pop(launch_id, None)
        done = self.started.pop(launch_id, None)
        try:
            if target is not None and force:
                remote_dir = self.settings.get("remote_dir", DEFAULT_REMOTE_DIR)

                def stop() -> str:
                    client = self._connect(target)
                    try:
                        return remote_stop(client, remote_dir, now=True, timeout=15)
                    finally:
                        client.close()

                log.info(
                    "stopping %s on %s: %s: %s", launch_id, target, reason, await asyncio.to_thread(stop)
                )
        finally:
            if done is not None:
                done.close()

    async def close(self) -> None:
        for done in self.started.values():
            done.close()  # tunnels end; workers without one keep running and reconnect to the next master
        self.started.clear()
