"""Hosts of our own for tests and benchmarks: a network namespace joined by a veth pair (another
machine, as far as the network goes) and an sshd inside it. Test infrastructure, kept out of the
wheel: users' own tests get titan_runtime.testing (a local cluster) and nothing of this."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from titan_runtime.testing import stop_process, wait_until


class NetworkNamespace:
    """A host of our own: a Linux network namespace joined to this one by a veth pair.

    The master listens on the host side (`host_ip`); processes started with `prefix` run inside the
    namespace and reach it across the link, which `cut()` and `heal()` take down and bring back (a
    partition: packets vanish, nobody gets a reset). Needs root and iproute2; `close()` removes it all.
    """

    def __init__(self) -> None:
        import secrets

        suffix = secrets.token_hex(3)
        self.name = f"titan-{suffix}"
        self.host_dev = f"th{suffix}"
        self.ns_dev = f"tn{suffix}"
        octet2, octet3 = 200 + secrets.randbelow(50), secrets.randbelow(250)
        self.host_ip = f"10.{octet2}.{octet3}.1"
        self.ns_ip = f"10.{octet2}.{octet3}.2"
        self._ip("netns", "add", self.name)
        try:
            self._ip("link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev)
            self._ip("link", "set", self.ns_dev, "netns", self.name)
            self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_dev)
            self._ip("link", "set", self.host_dev, "up")
            self._ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_dev)
            self._ip("netns", "exec", self.name, "ip", "link", "set", self.ns_dev, "up")
            self._ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def available() -> str | None:
        """Why namespaces cannot be used here, or None when they can."""
        import shutil

        if os.geteuid() != 0:
            return "creating network namespaces needs root"
        if shutil.which("ip") is None:
            return "iproute2 (the `ip` command) is not installed"
        return None

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        self._ip("link", "set", self.host_dev, "down")

    def heal(self) -> None:
        self._ip("link", "set", self.host_dev, "up")

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_dev], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


class SshServer:
    """A real sshd inside a network namespace, playing a remote host for SSH bootstrap tests.

    Generates its host key and a user key (authorized for root) in `root`, listens on the
    namespace's address, and is stopped by its pid (`close()`). Needs root and openssh-server.
    """

    SSHD = "/usr/sbin/sshd"

    def __init__(self, ns: NetworkNamespace, root: Path) -> None:
        self.ns = ns
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "user_key"
        self.other_key = root / "other_key"  # a key the host does not know
        for path in (root / "host_key", self.key, self.other_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        authorized = root / "authorized_keys"
        authorized.write_text((root / "user_key.pub").read_text())
        authorized.chmod(0o600)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        config = root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {ns.ns_ip}:22",
                    f"HostKey {root / 'host_key'}",
                    "PidFile none",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    f"AuthorizedKeysFile {authorized}",
                    "StrictModes no",
                    "AllowTcpForwarding yes",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                ]
            )
            + "\n"
        )
        self.log_path = root / "sshd.log"
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*ns.prefix, self.SSHD, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        try:
            wait_until(self._listening, 20, what="sshd to listen in the namespace")
        except BaseException:
            self.close()
            raise

    @classmethod
    def available(cls) -> str | None:
        """Why an sshd cannot be run here, or None when it can."""
        import shutil

        why = NetworkNamespace.available()
        if why:
            return why
        if not os.path.exists(cls.SSHD) or shutil.which("ssh-keygen") is None:
            return "openssh-server is not installed (apt-get install openssh-server; .ci/run does)"
        return None

    def _listening(self) -> bool:
        import socket

        if self.proc.poll() is not None:
            raise AssertionError(f"sshd exited: {self.log_path.read_text()}")
        try:
            with socket.create_connection((self.ns.ns_ip, 22), timeout=1):
                return True
        except OSError:
            return False

    @property
    def target(self) -> str:
        return f"root@{self.ns.ns_ip}"

    def close(self) -> None:
        stop_process(self.proc)


class PostgresServer:
    """A PostgreSQL server of our own: initdb into a temp dir, started on a free port of 127.0.0.1
    as an unprivileged user (PostgreSQL refuses root), stopped by its pid. Debian's postgresql
    package (installed by .ci/run) or any `initdb` on the PATH."""

    USER = "nobody"

    @staticmethod
    def binaries() -> Path | None:
        import glob
        import shutil

        found = shutil.which("initdb")
        if found:
            return Path(os.path.realpath(found)).parent
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        return Path(versions[-1]).parent if versions else None

    @classmethod
    def available(cls) -> str:
        """Why a server cannot be started here ("" when it can)."""
        if cls.binaries() is None:
            return "no PostgreSQL server (apt-get install postgresql)"
        if os.geteuid() != 0:
            return "starting PostgreSQL as another user needs root"
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "no psycopg (pip install -e .[postgres])"
        return ""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        """`env`: the server's environment (a session's server is not any one test's process)."""
        import pwd
        import socket

        bin_dir = self.binaries()
        assert bin_dir is not None
        self.root = root
        self.data = root / "pgdata"
        user = pwd.getpwnam(self.USER)
        root.mkdir(parents=True, exist_ok=True)
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        subprocess.run(
            [bin_dir / "initdb", "-D", self.data, "-U", "titan", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, cwd=root, **as_user,  # type: ignore[call-overload]
        )  # fmt: skip
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        log = open(root / "postgres.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [bin_dir / "postgres", "-D", self.data, "-p", str(self.port), "-h", "127.0.0.1", "-k", root,
             "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=root, env=env, **as_user,  # type: ignore[call-overload]
        )  # fmt: skip
        log.close()
        self.databases = 0
        try:
            wait_until(self._accepts, 30, what="PostgreSQL to accept connections")
        except BaseException:
            self.stop()
            raise

    def _accepts(self) -> bool:
        import psycopg

        if self.proc.poll() is not None:
            raise AssertionError(f"postgres exited: {(self.root / 'postgres.log').read_text()[-2000:]}")
        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://titan@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a database of its own (one per test: no state shared between tests)."""
        import psycopg

        self.databases += 1
        name = f"t{self.databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        import signal

        stop_process(self.proc, signal.SIGINT)  # PostgreSQL's fast shutdown
