"""A job's memory limit (`resources.memory`): a cgroup where the host lets the worker make one, an
address-space rlimit otherwise.

Modes, chosen once per worker process (`enforcer()`), advertised as `enforcer().mode`:

* "cgroup v2": /sys/fs/cgroup is the unified hierarchy with the memory controller. Each job gets
  `<worker's cgroup>/titan-<pid>/job-<attempt>` with memory.max (and memory.swap.max 0, so swap does
  not stretch the limit). The no-internal-processes rule says a cgroup whose children get the
  memory controller may hold no process itself: when the worker's own cgroup has it not enabled
  for its children and cannot enable it because the worker is in it, the worker moves itself into
  the leaf `titan-<pid>/worker` and tries again; if that cannot work either (other processes share
  the cgroup), it moves back and uses the rlimit.
* "cgroup v1": the memory controller's own hierarchy (hybrid or legacy hosts, /sys/fs/cgroup/memory).
  `titan-<pid>/job-<attempt>` under the worker's memory cgroup, with memory.limit_in_bytes and
  memory.memsw.limit_in_bytes (when the kernel accounts swap, so swap does not bypass it).
* "rlimit": RLIMIT_AS, set by a wrapper that then execs the job. It limits address space, not
  memory: a program that reserves much more than it touches (the JVM, Go) is stopped early.

Why cgroups: the kernel then counts what the job's processes really use (all of them, their
children included) and its out-of-memory killer stops the job at the limit, so the worker can say
plainly what happened. Why a wrapper to join: the worker is multi-threaded (gRPC), so no code may run
between fork and exec; the worker makes the cgroup and writes the limit before the job starts, and
the job's first process (`/bin/sh`, ~1 ms) writes its own pid into the cgroup, then execs the job.

Nothing here may stop a worker: any step that fails (no permission, EBUSY, no controller) falls
back, to the rlimit for the whole worker at detection, or for that one job later. No directory is
left behind: a job's cgroup is emptied (SIGKILL) and removed when its main process has exited,
`close()` removes the rest when the worker stops (and at interpreter exit), and a worker starting
removes what earlier workers of its pid left, and the empty directories of workers that are gone.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_V2 = "cgroup v2"
CGROUP_V1 = "cgroup v1"
RLIMIT = "rlimit"

#: How long emptying and removing a job's cgroup may take before it is left for a later try.
REMOVE_WAIT_S = 1.0
_POLL_S = 0.005

# Sets the address-space limit, then becomes the job (for systems without util-linux's prlimit).
_LIMIT_THEN_EXEC = (
    "import os, resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_AS, (n, n)); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)

# Run as `sh -c _JOIN titan-memory PROCS ARGV...`: moves itself ($$, the pid the job keeps: exec
# does not change it) into the job's cgroup, then becomes the job. If it cannot, the job does not
# run unlimited: it fails with 125 and says why on its stderr.
_JOIN = (
    'echo $$ > "$1" || { echo "titan: cannot move the job into its memory cgroup ($1)" >&2; exit 125; }; '
    'shift; exec "$@"'
)


def memory_limited(argv: list[str], limit_mb: int) -> list[str]:
    """`argv` run under an address-space limit (RLIMIT_AS), set by a wrapper that then execs it.

    A wrapper rather than a pre-exec hook: code between fork and exec in a multi-threaded worker
    (gRPC has threads) can deadlock or crash.
    """
    limit = str(limit_mb * 1024 * 1024)
    prlimit = shutil.which("prlimit")
    if prlimit:
        return [prlimit, f"--as={limit}", "--", *argv]
    return [sys.executable, "-S", "-c", _LIMIT_THEN_EXEC, limit, *argv]


def joining(argv: list[str], procs: Path) -> list[str]:
    """`argv` started by a wrapper that first moves itself into the cgroup whose cgroup.procs is `procs`."""
    return ["/bin/sh", "-c", _JOIN, "titan-memory", str(procs), *argv]


class Unavailable(Exception):
    """This host (or this worker's place in it) does not allow the mode tried; the message says why."""


class CgroupFiles:
    """The few operations on cgroupfs, in one place so that tests can stand in a fake tree with the
    kernel's rules (a cgroup directory is removed with its files, only when no process is in it)."""

    def read(self, path: Path) -> str:
        with open(path) as fh:
            return fh.read()

    def write(self, path: Path, text: str) -> None:
        # One write() call: cgroupfs takes each write as one command.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def chown(self, path: Path, uid: int) -> None:
        os.chown(path, uid, -1)

    def pids(self, cgroup: Path) -> list[int]:
        try:
            return [int(p) for p in self.read(cgroup / "cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def kill_all(self, cgroup: Path) -> None:
        """SIGKILL every process in `cgroup`. Through pidfds, confirmed by a second reading of the
        list, so that a pid that ended and was reused by a process elsewhere is never signalled."""
        opened: dict[int, int] = {}
        for pid in self.pids(cgroup):
            with contextlib.suppress(OSError):
                opened[pid] = os.pidfd_open(pid)
        try:
            still = set(self.pids(cgroup))
            for pid, fd in opened.items():
                if pid in still:
                    with contextlib.suppress(OSError):
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            for fd in opened.values():
                os.close(fd)


def _own_cgroup(mount: Path, relative: str, pid: int, files: CgroupFiles) -> Path:
    """The directory of this process's cgroup under `mount`. /proc/self/cgroup gives its path from
    the hierarchy's root, which is the mount's root except in a container that sees its own cgroup
    mounted as the root without a cgroup namespace: then the mount itself is the one listing us."""
    for candidate in (mount / relative.lstrip("/"), mount):
        try:
            if pid in files.pids(candidate):
                return candidate
        except OSError:
            continue
    raise Unavailable(f"cannot find this process's cgroup under {mount} (/proc/self/cgroup says {relative})")


def _memory_line(proc_cgroup: str, version: int) -> str:
    """This process's cgroup path for the v2 hierarchy ("0::/path") or the v1 memory controller."""
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if version == 2 and number == "0" and controllers == "":
            return path
        if version == 1 and "memory" in controllers.split(","):
            return path
    raise Unavailable(f"/proc/self/cgroup names no {'cgroup v2' if version == 2 else 'memory cgroup'}")


def _counter(text: str, name: str) -> int | None:
    """The value of `name` in a flat-keyed file like memory.events ("oom_kill 3"); None if absent."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            with contextlib.suppress(ValueError):
                return int(value)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class JobMemory:
    """One job's memory limit: the argv that applies it, then (`release`) what the kernel saw."""

    argv: list[str]
    limit_mb: int
    mode: str  # the mode this job actually got: a cgroup mode, or RLIMIT when its cgroup failed
    cgroup: Path | None = None
    enforcer: MemoryEnforcer | None = field(default=None, repr=False)
    #: Processes of the job the out-of-memory killer killed; None when the kernel does not say (old v1).
    oom_kills: int | None = None
    #: v1 without oom_kill counting: whether the job ever hit its limit (memory.failcnt).
    hit_limit: bool = False
    released: bool = False

    def release(self) -> None:
        """After the job's main process has exited: read whether the out-of-memory killer acted,
        kill what is left in the cgroup and remove it. Idempotent."""
        if self.released:
            return
        self.released = True
        if self.cgroup is not None and self.enforcer is not None:
            self.oom_kills, self.hit_limit = self.enforcer.oom_state(self.cgroup)
            self.enforcer.remove(self.cgroup)

    def oom_killed(self, sigkilled: bool) -> bool:
        """Whether the out-of-memory killer killed a process of the job (for a kernel that does not
        count its kills: the job hit its limit and its main process died of SIGKILL)."""
        if self.mode == RLIMIT:
            return False
        if self.oom_kills is not None:
            return self.oom_kills > 0
        return sigkilled and self.hit_limit

    def explain(self, reason: str, sigkilled: bool) -> str:
        """The failure `reason` ("exit code 1", "killed by SIGKILL") said with what the limit did."""
        if self.mode == RLIMIT:
            if sigkilled:
                reason = "killed by SIGKILL, likely out of memory"
            return f"{reason} (its address space was limited to {self.limit_mb} MB by resources.memory)"
        limit = f"{self.limit_mb} MB (resources.memory)"
        if self.oom_killed(sigkilled):
            if sigkilled:
                return f"killed by the out-of-memory killer: it used more than its {limit}"
            return (
                f"{reason} after the out-of-memory killer killed one of its processes: "
                f"the job used more than its {limit}"
            )
        if sigkilled:
            return f"{reason}, not by the out-of-memory killer"
        return reason


class MemoryEnforcer:
    """Makes, limits and removes the cgroups of one worker's jobs (or wraps them in an rlimit).

    Build it with `detect` (tests give it a fake tree); a worker uses the one `enforcer()` returns.
    """

    def __init__(
        self,
        mode: str,
        base: Path | None = None,
        files: CgroupFiles | None = None,
        why: str = "",
    ) -> None:
        self.mode = mode
        #: `titan-<pid>`: every job cgroup of this worker is a child of it.
        self.base = base
        #: Why the mode is what it is (for a log line): the reason a cgroup mode was not possible.
        self.why = why
        self.files = files or CgroupFiles()
        self._own: Path | None = None  # the cgroup the worker was in
        self._moved = False  # v2: the worker moved itself into base/"worker"
        self._enabled_in_own = False  # v2: it enabled +memory in its own cgroup's subtree_control
        self._pid = os.getpid()
        self._live: set[Path] = set()
        self._leftover: set[Path] = set()  # could not be removed yet; tried again at each removal
        self._shared_with: set[int] = set()  # uids that were given the base's cgroup.procs (v2)
        self._closed = False

    # --- detection ---------------------------------------------------------------------------

    @classmethod
    def detect(
        cls,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        proc_cgroup: Path = Path("/proc/self/cgroup"),
        pid: int | None = None,
        files: CgroupFiles | None = None,
    ) -> MemoryEnforcer:
        """The best mode this process can have: cgroup v2, else cgroup v1, else the rlimit. Makes
        (and cleans) this worker's `titan-<pid>` directory, which `close()` removes."""
        files = files or CgroupFiles()
        pid = os.getpid() if pid is None else pid
        try:
            text = files.read(proc_cgroup)
        except OSError as exc:
            return cls(RLIMIT, files=files, why=f"cannot read {proc_cgroup}: {exc.strerror}")
        whys = []
        for version, setup in ((2, cls._setup_v2), (1, cls._setup_v1)):
            enforcer = cls(CGROUP_V2 if version == 2 else CGROUP_V1, files=files)
            enforcer._pid = pid
            try:
                setup(enforcer, cgroup_root, text)
            except (Unavailable, OSError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if isinstance(exc, OSError) and exc.filename:
                    why = f"{exc.filename}: {why}"
                whys.append(f"{enforcer.mode}: {why}")
                continue
            return enforcer
        return cls(RLIMIT, files=files, why="; ".join(whys))

    def _setup_v2(self, root: Path, proc_cgroup: str) -> None:
        try:
            available = self.files.read(root / "cgroup.controllers").split()
        except FileNotFoundError:
            raise Unavailable(f"{root} is not a cgroup2 mount") from None
        if "memory" not in available:
            raise Unavailable(f"the memory controller is not enabled in {root}")
        own = _own_cgroup(root, _memory_line(proc_cgroup, 2), self._pid, self.files)
        if own != root and "memory" not in self.files.read(own / "cgroup.controllers").split():
            raise Unavailable(f"the memory controller is not given to {own}")
        self._own = own
        self._make_base(own)
        assert self.base is not None
        try:
            if "memory" not in self.files.read(own / "cgroup.subtree_control").split():
                self._enable_in_own(own)
            self.files.write(self.base / "cgroup.subtree_control", "+memory")
        except (OSError, Unavailable):
            self._undo_v2()
            raise

    def _enable_in_own(self, own: Path) -> None:
        """+memory for the children of the worker's cgroup. Refused (EBUSY) while processes are in
        it: then the worker moves itself into a leaf of its own and tries once more."""
        try:
            self.files.write(own / "cgroup.subtree_control", "+memory")
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            assert self.base is not None
            self.files.mkdir(self.base / "worker")
            self.files.write(self.base / "worker" / "cgroup.procs", str(self._pid))
            self._moved = True
            try:
                self.files.write(own / "cgroup.subtree_control", "+memory")
            except OSError as again:
                others = [p for p in self.files.pids(own) if p != self._pid]
                if again.errno == errno.EBUSY and others:
                    raise Unavailable(
                        f"{own} holds other processes ({len(others)}), so its children cannot have "
                        "the memory controller (the no-internal-processes rule)"
                    ) from None
                raise
        self._enabled_in_own = True

    def _undo_v2(self) -> None:
        """Put the worker back where it was and remove what detection made."""
        assert self.base is not None and self._own is not None
        if self._moved:
            self._move_back()
        for made in (self.base / "worker", self.base):
            with contextlib.suppress(OSError):
                self.files.rmdir(made)

    def _move_back(self) -> None:
        assert self.base is not None and self._own is not None
        with contextlib.suppress(OSError):
            self.files.write(self.base / "cgroup.subtree_control", "-memory")
        if self._enabled_in_own:  # else the worker cannot be put back in its cgroup (EBUSY)
            with contextlib.suppress(OSError):
                self.files.write(self._own / "cgroup.subtree_control", "-memory")
        try:
            self.files.write(self._own / "cgroup.procs", str(self._pid))
        except OSError as exc:
            log.debug("cannot move the worker back into %s: %s", self._own, exc)
            return
        self._moved = False
        with contextlib.suppress(OSError):
            self.files.rmdir(self.base / "worker")

    def _setup_v1(self, root: Path, proc_cgroup: str) -> None:
        relative = _memory_line(proc_cgroup, 1)
        mounts = [root / "memory"]
        with contextlib.suppress(OSError):  # co-mounted controllers: /sys/fs/cgroup/cpu,memory
            mounts += sorted(
                p for p in root.iterdir() if p.name != "memory" and "memory" in p.name.split(",")
            )
        mount = next((m for m in mounts if (m / "memory.limit_in_bytes").exists()), None)
        if mount is None:
            raise Unavailable(f"no cgroup v1 memory controller is mounted under {root}")
        own = _own_cgroup(mount, relative, self._pid, self.files)
        self._own = own
        self._make_base(own)

    def _make_base(self, own: Path) -> None:
        """`own/titan-<pid>`, after removing what earlier workers left in `own`."""
        self._sweep(own)
        self.base = own / f"titan-{self._pid}"
        try:
            self.files.mkdir(self.base)
        except FileExistsError:  # this very process is in it (it exec'd itself): keep it
            pass

    def _sweep(self, own: Path) -> None:
        """Remove `titan-<pid>` directories of earlier workers: one of this pid (a worker before
        this one had it) with whatever still runs in it; those of a pid that no longer runs only
        when empty (their jobs are the reaper's to kill, and not this worker's)."""
        try:
            entries = [p for p in own.iterdir() if re.fullmatch(r"titan-\d+", p.name) and p.is_dir()]
        except OSError:
            return
        for base in entries:
            pid = int(base.name.removeprefix("titan-"))
            mine = pid == self._pid
            if not mine and _pid_alive(pid):
                continue
            with contextlib.suppress(OSError):
                for child in [p for p in base.iterdir() if p.is_dir()]:
                    if mine and self._pid not in self.files.pids(child):
                        self.remove(child)
                    else:
                        with contextlib.suppress(OSError):
                            self.files.rmdir(child)
            with contextlib.suppress(OSError):
                self.files.rmdir(base)
                log.info("removed %s, left by an earlier worker", base)

    # --- jobs --------------------------------------------------------------------------------

    def limit(self, argv: list[str], limit_mb: int, name: str, uid: int | None = None) -> JobMemory:
        """`argv` limited to `limit_mb` MB: in a new cgroup (named after `name`, the attempt) that
        the job joins as it starts, or under the rlimit. `uid`: the user the job runs as, when
        it is not the worker's (it must be allowed to move itself into the cgroup).

        Call `release()` on the result once the job's main process has exited (and been reaped)."""
        if self.mode == RLIMIT or self.base is None or self._closed:
            return JobMemory(memory_limited(argv, limit_mb), limit_mb, RLIMIT)
        if uid is not None and self.mode == CGROUP_V2 and not self._moved:
            # v2 lets a process move only with write access to cgroup.procs of the common ancestor
            # of where it is and where it goes: the worker's own cgroup, which is not ours to give.
            log.info("a job run as uid %d cannot join a cgroup here; it gets the rlimit", uid)
            return JobMemory(memory_limited(argv, limit_mb), limit_mb, RLIMIT)
        self._retry_leftovers()
        cgroup = self.base / ("job-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:200])
        try:
            self._make_job(cgroup, limit_mb * 1024 * 1024, uid)
        except OSError as exc:
            log.warning("cannot make the memory cgroup %s (%s); the job gets the rlimit", cgroup, exc)
            self.remove(cgroup)
            return JobMemory(memory_limited(argv, limit_mb), limit_mb, RLIMIT)
        self._live.add(cgroup)
        return JobMemory(joining(argv, cgroup / "cgroup.procs"), limit_mb, self.mode, cgroup, self)

    def _make_job(self, cgroup: Path, limit: int, uid: int | None) -> None:
        try:
            self.files.mkdir(cgroup)
        except FileExistsError:  # an attempt started again under the same id: start afresh
            if not self.remove(cgroup):
                raise
            self.files.mkdir(cgroup)
        if self.mode == CGROUP_V2:
            self.files.write(cgroup / "memory.max", str(limit))
            if (cgroup / "memory.swap.max").exists():  # swap accounting on: no swap beyond the limit
                self.files.write(cgroup / "memory.swap.max", "0")
        else:
            self.files.write(cgroup / "memory.limit_in_bytes", str(limit))
            if (cgroup / "memory.memsw.limit_in_bytes").exists():  # memory + swap: no more than memory
                self.files.write(cgroup / "memory.memsw.limit_in_bytes", str(limit))
        if uid is not None:
            self.files.chown(cgroup / "cgroup.procs", uid)
            if self.mode == CGROUP_V2 and uid not in self._shared_with:
                # The common ancestor of the worker's leaf and the job's cgroup. A process of that
                # user can then move between job cgroups of this worker (each limited), never out.
                assert self.base is not None
                self.files.chown(self.base / "cgroup.procs", uid)
                self._shared_with.add(uid)

    def oom_state(self, cgroup: Path) -> tuple[int | None, bool]:
        """(how many processes the out-of-memory killer killed in `cgroup`, or None if the kernel
        does not count them; whether the cgroup ever hit its limit)."""
        if self.mode == CGROUP_V2:
            with contextlib.suppress(OSError):
                return _counter(self.files.read(cgroup / "memory.events"), "oom_kill"), False
            return None, False
        kills: int | None = None
        with contextlib.suppress(OSError):
            kills = _counter(self.files.read(cgroup / "memory.oom_control"), "oom_kill")
        failcnt = 0
        with contextlib.suppress(OSError, ValueError):
            failcnt = int(self.files.read(cgroup / "memory.failcnt"))
        return kills, failcnt > 0

    def remove(self, cgroup: Path) -> bool:
        """Kill every process in `cgroup` and remove it, polling for at most REMOVE_WAIT_S (killed
        processes take a moment to leave); if it is still there then, it is tried again later."""
        deadline = time.monotonic() + REMOVE_WAIT_S
        killed = False
        while True:
            if not killed and (cgroup / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    self.files.write(cgroup / "cgroup.kill", "1")  # v2, Linux 5.14+: all at once
                killed = True
            try:
                if not self.files.pids(cgroup):
                    self.files.rmdir(cgroup)
                    break
                self.files.kill_all(cgroup)
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    log.warning("cannot remove the memory cgroup %s: %s", cgroup, exc)
                    break
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_S)
        self._live.discard(cgroup)
        if cgroup.exists():
            self._leftover.add(cgroup)
            return False
        self._leftover.discard(cgroup)
        return True

    def _retry_leftovers(self) -> None:
        for cgroup in list(self._leftover):
            self._leftover.discard(cgroup)
            if cgroup.exists():
                with contextlib.suppress(OSError):
                    self.files.kill_all(cgroup)
                    self.files.rmdir(cgroup)
            if cgroup.exists():
                self._leftover.add(cgroup)

    def close(self) -> None:
        """When the worker stops: kill what is left in its job cgroups, remove them and `titan-<pid>`
        (moving the worker back to its own cgroup if it had left it). Idempotent; jobs limited
        afterwards get the rlimit."""
        if self._closed:
            return
        self._closed = True
        if self.base is None:
            return
        for cgroup in [*self._live, *self._leftover]:
            self.remove(cgroup)
        with contextlib.suppress(OSError):
            for child in [p for p in self.base.iterdir() if p.is_dir() and p.name != "worker"]:
                self.remove(child)
        if self._moved:
            self._move_back()
        try:
            self.files.rmdir(self.base)
        except FileNotFoundError:
            pass
        except OSError as exc:  # a worker that could not move back: its successor's sweep removes it
            log.debug("cannot remove %s: %s", self.base, exc)


_detected: MemoryEnforcer | None = None
_detecting = threading.Lock()


def enforcer() -> MemoryEnforcer:
    """This worker process's enforcer: detected on first use, closed at interpreter exit (the agent
    closes it sooner, when it stops). Call it before starting other processes: in cgroup v2 the
    worker may have to move itself, which only works while it is alone in its cgroup. Once per
    process (under a lock): a second detection would take the first one's `titan-<pid>` for a
    leftover and remove it."""
    global _detected
    with _detecting:
        if _detected is None:
            found = MemoryEnforcer.detect()
            if found.mode == RLIMIT:
                log.info(
                    "memory limits: rlimit (address space), because %s", found.why or "no cgroup is usable"
                )
            else:
                log.info("memory limits: %s, under %s", found.mode, found.base)
            atexit.register(found.close)
            _detected = found
        return _detected
