"""Running jobs as another OS user (`worker --job-user USER`, issue 19).

A worker runs its jobs as its own user unless told otherwise, and then a job can read whatever the
worker can: its token file, its spool (every job's output), its cache. A worker started as root
with `--job-user USER` starts every job as USER instead: its uid, gid and supplementary groups,
HOME, USER and LOGNAME, umask 077. The Python launcher is started the same way, so the jobs it forks
are USER too.

How: `subprocess`'s own `user=` cannot be used, because it forks (vfork is off when ids change) and
gRPC's fork handlers abort a forked child of the worker. So the worker execs a small dropper
(`DROP`, its own interpreter with `-I -S`, an empty environment and cwd /: nothing the job chose
reaches root, not even LD_PRELOAD), which takes the job's environment from a memfd, sets groups,
gid and uid (real, effective and saved), the umask and the cwd, and execs the job.

The worker's work dir stays root's and 0700. A job needs a directory of its own, reachable by a
user that is not root, so attempts live under a separate root directory (`JobDirs`): made by the
worker in the system's temp dir, 0711 (USER may pass through it but not list it), each attempt a
directory of USER's (0700) holding the workspace (`work/`) and the result file. Everything in it is
prepared by root while it is still root's and 0700, and handed to USER just before the job starts;
after that the root worker touches it only in ways a planted symlink cannot redirect: the result is
opened with O_NOFOLLOW and read only if it is a regular file USER owns, and the directory is removed
with `shutil.rmtree`, which does not follow links out of it.
"""

from __future__ import annotations

import marshal
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What a job's files are created with: the job user's alone.
JOB_UMASK = 0o077

#: Run by root as `python -I -S -c DROP ENV_FD UID GID GROUPS CWD ARGV...`: becomes the job user, then
#: the job. A program that cannot be started ends it with 127 and a line on its stderr, as a shell does.
DROP = """
import marshal, os, sys
fd, uid, gid = (int(a) for a in sys.argv[1:4])
with os.fdopen(fd, "rb") as fh:
    env = marshal.loads(fh.read())
os.setgroups([int(g) for g in sys.argv[4].split(",") if g])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
os.umask(0o077)
try:
    os.chdir(sys.argv[5])
    os.execvpe(sys.argv[6], sys.argv[6:], env)
except OSError as exc:
    os.write(2, f"titan: cannot start {sys.argv[6]!r}: {exc.strerror or exc}\\n".encode())
    os._exit(127)
"""


class JobUserError(ValueError):
    """`--job-user` cannot be honoured; the message says why and what to do."""


@dataclass(frozen=True)
class JobUser:
    """Who jobs run as, resolved once when the worker starts (a later change to /etc/passwd does
    not change what a running worker does)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def resolve(cls, value: str) -> JobUser:
        """The user named (or numbered) `value`; JobUserError unless the worker is root and the
        user exists and is not root."""
        if os.geteuid() != 0:
            raise JobUserError(
                "--job-user needs a worker started as root: only root can start processes as another user"
            )
        try:
            entry = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
        except (KeyError, OverflowError):
            raise JobUserError(f"--job-user {value}: there is no such user on this host") from None
        if entry.pw_uid == 0:
            raise JobUserError(
                f"--job-user {value} is root: jobs would run with every privilege; "
                "give a user of their own (for example nobody)"
            )
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def env(self) -> dict[str, str]:
        """What a job of this user finds about itself in its environment (HOME as /etc/passwd says,
        even when it does not exist, like nobody's /nonexistent)."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def start(
        self, argv: Sequence[str], cwd: str | os.PathLike[str], env: Mapping[str, str], **popen: Any
    ) -> subprocess.Popen[bytes]:
        """`subprocess.Popen(argv, cwd=cwd, env=env, **popen)`, run as this user (see DROP). The
        environment goes through a memfd, never on a command line (`ps` shows those to everyone)."""
        fd = os.memfd_create("titan-job-env")
        try:
            data = memoryview(marshal.dumps(dict(env)))
            while data:
                data = data[os.write(fd, data) :]
            os.lseek(fd, 0, os.SEEK_SET)
            ids = [str(fd), str(self.uid), str(self.gid), ",".join(map(str, self.groups)), str(cwd)]
            return subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", DROP, *ids, *argv],
                env={},
                cwd="/",
                pass_fds=(*popen.pop("pass_fds", ()), fd),
                **popen,
            )
        finally:
            os.close(fd)

    def _allowed(self, st: os.stat_result, bit: int) -> bool:
        """Whether this user has `bit` (4 read, 2 write, 1 execute/search) on a file so described."""
        if st.st_uid == self.uid:
            return bool(st.st_mode & (bit << 6))
        if st.st_gid in self.groups:
            return bool(st.st_mode & (bit << 3))
        return bool(st.st_mode & bit)

    def unreachable(self, path: Path) -> str:
        """The first directory on the way to `path` this user may not pass through ("" if none),
        as the kernel would judge it (permission bits; ACLs are not looked at)."""
        for directory in reversed([path, *path.parents]):
            try:
                st = directory.stat()
            except OSError as exc:
                return f"{directory} ({exc.strerror})"
            if not self._allowed(st, 1):
                return f"{directory} (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid})"
        return ""

    def cannot_run(self, program: str) -> str:
        """Why this user could not execute `program` ("" if it can): the Python every `.py` job and
        the launcher start with must be one the job user can run."""
        real = Path(os.path.realpath(program))
        blocked = self.unreachable(real.parent)
        if blocked:
            return f"{blocked} is in the way"
        try:
            if not self._allowed(real.stat(), 1):
                return f"{real} is not executable for it"
        except OSError as exc:
            return f"{real}: {exc.strerror}"
        return ""


@dataclass(frozen=True)
class AttemptDir:
    """One attempt's directory, the job user's: its workspace and its result file."""

    root: Path

    @property
    def workspace(self) -> Path:
        return self.root / "work"

    @property
    def result(self) -> Path:
        return self.root / "result.json"


class JobDirs:
    """Where attempts live when jobs run as another user: a directory root owns (0711) in the
    system's temp dir, outside the worker's private work dir, removed when the worker stops."""

    def __init__(self, user: JobUser, name: str) -> None:
        self.user = user
        self.root = Path(tempfile.mkdtemp(prefix=f"titan-jobs-{name}-"))  # 0700, a fresh random name
        os.chmod(self.root, 0o711)  # passable, not listable: one attempt cannot find another's
        blocked = user.unreachable(self.root)
        if blocked:
            os.rmdir(self.root)
            raise JobUserError(
                f"jobs run as {user.name} cannot reach {self.root}: {blocked}; "
                "set TMPDIR to a directory they can pass through"
            )

    def attempt(self, attempt_id: str) -> AttemptDir:
        return AttemptDir(self.root / attempt_id)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def prepare(where: AttemptDir) -> None:
    """Make the attempt's directories, root's and 0700 until `hand_over`: nothing the job user
    runs (another of its jobs) can get in while root unpacks and links into them."""
    where.root.mkdir(mode=0o700)  # fresh: an attempt's directory is never reused
    where.workspace.mkdir(mode=0o700)


def hand_over(where: AttemptDir, user: JobUser) -> None:
    """Give the attempt's directory and everything in it to the job user, before the job starts.

    lchown throughout: nothing here follows a link. A file with more than one link is the script
    linked from the worker's cache: it stays root's (0755: the job reads and runs it, and cannot
    change what the cache holds for later jobs). The directory itself goes last, so the user can
    enter only once everything in it is its own."""
    for top, dirs, files in os.walk(where.root, topdown=False):
        for name in files:
            path = os.path.join(top, name)
            if os.lstat(path).st_nlink == 1:
                os.lchown(path, user.uid, user.gid)
        for name in dirs:
            os.lchown(os.path.join(top, name), user.uid, user.gid)
    os.lchown(where.root, user.uid, user.gid)


def open_result(path: Path, owner: int | None) -> int | None:
    """An fd on the job's result file, or None when there is none. Raises ValueError for a file that
    is not one the job wrote: a link, a FIFO or device (which would block or never end), or a file
    another user owns (a hard link to one the job could not read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise ValueError("the job's result file is a symbolic link; write the result itself") from None
        raise ValueError(f"the job's result file cannot be read ({exc.strerror})") from None
    st = os.fstat(fd)
    problem = ""
    if not stat.S_ISREG(st.st_mode):
        problem = "the job's result file is not a regular file"
    elif owner is not None and st.st_uid != owner:
        problem = "the job's result file is not the job user's own"
    if problem:
        os.close(fd)
        raise ValueError(problem)
    return fd
