"""Memory enforcement (worker/memory.py) against a fake cgroup tree: detection of cgroup v2, v1 and
the rlimit fallback, each job's cgroup, what the out-of-memory killer left, and the cleanup.

The fake tree is directories and files in tmp_path; `FakeFiles` gives them the kernel's rules the
enforcer relies on (a cgroup is removed with its files and only when empty; v2's no-internal-
processes rule; writing a pid to cgroup.procs moves it) and can fail any operation on a path, as a
host without permission or delegation would. Killing is recorded, never done: the pids are fake.
The real thing (cgroup v1 as root) is tests/integration/test_worker_memory.py.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from titan_runtime.worker import memory
from titan_runtime.worker.memory import (
    CGROUP_V1,
    CGROUP_V2,
    RLIMIT,
    CgroupFiles,
    JobMemory,
    MemoryEnforcer,
    joining,
)

ME = os.getpid()
OTHER = 4_000_000  # above any pid_max: a process that is certainly not running
ALIVE = os.getppid()


class FakeFiles(CgroupFiles):
    """cgroupfs semantics over a plain directory tree (see the module docstring)."""

    def __init__(self, root: Path, version: int) -> None:
        self.root = root
        self.version = version
        self.fail: dict[str, int] = {}  # a path's last parts ("titan-1/cgroup.procs") -> errno
        self.killed: list[int] = []
        self.chowned: dict[Path, int] = {}
        self.stubborn: set[int] = set()  # pids that do not die when killed

    def _check(self, path: Path) -> None:
        for suffix, code in self.fail.items():
            if str(path).endswith("/" + suffix):
                raise OSError(code, os.strerror(code), str(path))

    def fail_on(self, what: str, code: int) -> None:
        """Fail every operation on a path ending in `what`."""
        self.fail[what] = code

    # the controls a new cgroup directory comes with
    def mkdir(self, path: Path) -> None:
        self._check(path)
        os.mkdir(path)
        make_cgroup(path, self.version, memory=self._has_memory(path))

    def _has_memory(self, path: Path) -> bool:
        if self.version == 1:
            return True
        return "memory" in (path.parent / "cgroup.subtree_control").read_text().split()

    def rmdir(self, path: Path) -> None:
        self._check(path)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        if self.pids(path) or any(p.is_dir() for p in path.iterdir()):
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        for child in path.iterdir():
            child.unlink()
        os.rmdir(path)

    def write(self, path: Path, text: str) -> None:
        self._check(path)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        cgroup = path.parent
        if path.name == "cgroup.procs":
            pid = int(text)
            if self.version == 2 and cgroup != self.root and subtree(cgroup):
                raise OSError(errno.EBUSY, "Device or resource busy", str(path))
            for procs in self.root.rglob("cgroup.procs"):
                procs.write_text("".join(f"{p}\n" for p in read_pids(procs) if p != pid))
            path.write_text("".join(f"{p}\n" for p in [*read_pids(path), pid]))
        elif path.name == "cgroup.subtree_control":
            sign, controller = text[0], text[1:]
            if sign == "+" and cgroup != self.root and read_pids(cgroup / "cgroup.procs"):
                raise OSError(errno.EBUSY, "Device or resource busy", str(path))
            now = set(subtree(cgroup)) - {controller}
            path.write_text(" ".join(sorted(now | ({controller} if sign == "+" else set()))))
        elif path.name == "cgroup.kill":
            self.kill_all(cgroup)
        else:
            path.write_text(text)

    def chown(self, path: Path, uid: int) -> None:
        self._check(path)
        self.chowned[path] = uid

    def kill_all(self, cgroup: Path) -> None:
        pids = self.pids(cgroup)
        self.killed += pids
        (cgroup / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids if p in self.stubborn))


def read_pids(procs: Path) -> list[int]:
    return [int(p) for p in procs.read_text().split()]


def subtree(cgroup: Path) -> list[str]:
    return (cgroup / "cgroup.subtree_control").read_text().split()


def make_cgroup(path: Path, version: int, memory: bool = True, pids: tuple[int, ...] = ()) -> Path:
    """The control files of a cgroup (the ones the enforcer looks at)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))
    if version == 2:
        (path / "cgroup.controllers").write_text("cpu memory pids" if memory else "cpu pids")
        (path / "cgroup.subtree_control").write_text("")
        if memory:
            (path / "memory.max").write_text("max")
            (path / "memory.swap.max").write_text("max")
            (path / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
    else:
        (path / "memory.limit_in_bytes").write_text("9223372036854771712")
        (path / "memory.memsw.limit_in_bytes").write_text("9223372036854771712")
        (path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
        (path / "memory.failcnt").write_text("0")
    return path


class Host:
    """A fake /sys/fs/cgroup and /proc/self/cgroup, and `detect` pointed at them."""

    def __init__(self, tmp_path: Path, version: int) -> None:
        self.root = tmp_path / "cgroup"
        self.root.mkdir(parents=True)
        self.proc = tmp_path / "proc-self-cgroup"
        self.files = FakeFiles(self.root, version)

    def v2(self, own: str, others: tuple[int, ...] = (), root_memory: bool = True) -> Path:
        make_cgroup(self.root, 2, memory=root_memory)
        if root_memory:
            self.root.joinpath("cgroup.subtree_control").write_text("memory")
        cgroup = self.root / own.strip("/") if own != "/" else self.root
        walk = self.root
        for part in [p for p in own.strip("/").split("/") if p]:
            walk = walk / part
            make_cgroup(walk, 2, memory=root_memory)
            if walk != cgroup:
                walk.joinpath("cgroup.subtree_control").write_text("memory" if root_memory else "")
        make_cgroup(cgroup, 2, memory=root_memory, pids=(ME, *others))
        self.proc.write_text(f"0::{own}\n")
        return cgroup

    def v1(self, own: str, mount_name: str = "memory", mounted_as_root: bool = False) -> Path:
        mount = self.root / mount_name
        make_cgroup(mount, 1)
        cgroup = mount if mounted_as_root else make_cgroup(mount / own.strip("/"), 1)
        make_cgroup(cgroup, 1, pids=(ME,))
        self.proc.write_text(f"12:pids:/\n4:{mount_name}:{own}\n1:name=systemd:/init.scope\n0::/\n")
        return cgroup

    def detect(self) -> MemoryEnforcer:
        return MemoryEnforcer.detect(self.root, self.proc, ME, self.files)


@pytest.fixture
def v1(tmp_path: Path) -> tuple[Host, Path]:
    host = Host(tmp_path, 1)
    return host, host.v1("/process_api/abc")


def test_v2_in_a_cgroup_of_its_own_moves_the_worker_into_a_leaf(tmp_path: Path) -> None:
    host = Host(tmp_path, 2)
    own = host.v2("/system.slice/titan.service")
    found = host.detect()
    assert (found.mode, found.base) == (CGROUP_V2, own / f"titan-{ME}")
    leaf = own / f"titan-{ME}" / "worker"
    assert read_pids(leaf / "cgroup.procs") == [ME] and read_pids(own / "cgroup.procs") == []
    assert subtree(own) == ["memory"] and subtree(own / f"titan-{ME}") == ["memory"]

    found.close()
    assert read_pids(own / "cgroup.procs") == [ME]  # back where it was
    assert subtree(own) == []
    assert [p.name for p in own.iterdir() if p.is_dir()] == []


def test_v2_in_the_root_cgroup_stays_where_it_is(tmp_path: Path) -> None:
    host = Host(tmp_path, 2)
    host.v2("/")
    found = host.detect()
    assert found.mode == CGROUP_V2
    assert read_pids(host.root / "cgroup.procs") == [ME]
    assert not (host.root / f"titan-{ME}" / "worker").exists()
    found.close()
    assert not (host.root / f"titan-{ME}").exists()


def test_v2_sharing_its_cgroup_with_other_processes_falls_back_and_moves_back(tmp_path: Path) -> None:
    host = Host(tmp_path, 2)
    own = host.v2("/user.slice/session-1.scope", others=(ALIVE,))
    found = host.detect()
    assert found.mode == RLIMIT
    assert "no-internal-processes" in found.why and "holds other processes" in found.why
    assert sorted(read_pids(own / "cgroup.procs")) == sorted([ME, ALIVE])
    assert subtree(own) == [] and [p for p in own.iterdir() if p.is_dir()] == []


@pytest.mark.parametrize("where", [f"titan-{ME}", "cgroup.subtree_control", "worker/cgroup.procs"])
def test_v2_without_permission_falls_back_and_leaves_nothing(tmp_path: Path, where: str) -> None:
    host = Host(tmp_path, 2)
    own = host.v2("/user.slice/user-1000.slice/app.scope")
    host.files.fail_on(where, errno.EACCES)
    found = host.detect()
    assert found.mode == RLIMIT and "Permission denied" in found.why
    assert read_pids(own / "cgroup.procs") == [ME]
    assert [p for p in own.iterdir() if p.is_dir()] == []
    limited = found.limit(["true"], 100, "a-1")
    assert limited.mode == RLIMIT and limited.cgroup is None


def test_v2_without_the_memory_controller_falls_back(tmp_path: Path) -> None:
    host = Host(tmp_path, 2)
    host.v2("/x", root_memory=False)
    found = host.detect()
    assert found.mode == RLIMIT
    assert "memory controller is not enabled" in found.why


def test_nothing_readable_is_rlimit(tmp_path: Path) -> None:
    found = MemoryEnforcer.detect(tmp_path / "none", tmp_path / "no-proc", ME, FakeFiles(tmp_path, 1))
    assert found.mode == RLIMIT and "no-proc" in found.why
    found.close()


def test_v2_job_cgroup_limit_oom_and_cleanup(tmp_path: Path) -> None:
    host = Host(tmp_path, 2)
    host.v2("/titan.service")
    found = host.detect()
    job = found.limit(["python", "hog.py"], 200, "r-1/hog#1")
    assert job.mode == CGROUP_V2 and job.cgroup == found.base / "job-r-1_hog_1"  # type: ignore[operator]
    assert job.cgroup is not None
    assert (job.cgroup / "memory.max").read_text() == str(200 * 1024 * 1024)
    assert (job.cgroup / "memory.swap.max").read_text() == "0"
    assert job.argv == joining(["python", "hog.py"], job.cgroup / "cgroup.procs")

    host.files.write(job.cgroup / "cgroup.procs", "7001")  # the job, and a child it left
    host.files.write(job.cgroup / "cgroup.procs", "7002")
    (job.cgroup / "cgroup.kill").write_text("")
    (job.cgroup / "memory.events").write_text("oom 1\noom_kill 1\n")
    job.release()
    assert job.oom_kills == 1 and job.oom_killed(sigkilled=True)
    assert sorted(host.files.killed) == [7001, 7002] and not job.cgroup.exists()
    job.release()  # idempotent
    found.close()
    assert found.base is not None and not found.base.exists()


def test_v1_detection_job_limits_and_cleanup(v1: tuple[Host, Path]) -> None:
    host, own = v1
    found = host.detect()
    assert (found.mode, found.base) == (CGROUP_V1, own / f"titan-{ME}")
    job = found.limit(["sleep", "1"], 100, "a-1")
    assert job.cgroup is not None
    limit = str(100 * 1024 * 1024)
    assert (job.cgroup / "memory.limit_in_bytes").read_text() == limit
    assert (job.cgroup / "memory.memsw.limit_in_bytes").read_text() == limit
    host.files.write(job.cgroup / "cgroup.procs", "7001")
    (job.cgroup / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    job.release()
    assert job.oom_kills == 2 and host.files.killed == [7001] and not job.cgroup.exists()
    found.close()
    assert [p for p in own.iterdir() if p.is_dir()] == []


def test_v1_without_swap_accounting_sets_the_memory_limit_alone(v1: tuple[Host, Path]) -> None:
    host, _ = v1
    found = host.detect()
    real_mkdir = host.files.mkdir

    def no_memsw(path: Path) -> None:
        real_mkdir(path)
        (path / "memory.memsw.limit_in_bytes").unlink()

    host.files.mkdir = no_memsw  # type: ignore[method-assign]
    job = found.limit(["true"], 64, "a")
    assert job.mode == CGROUP_V1 and job.cgroup is not None
    assert not (job.cgroup / "memory.memsw.limit_in_bytes").exists()
    job.release()
    found.close()


def test_v1_old_kernel_without_oom_kill_count_uses_failcnt_and_sigkill(v1: tuple[Host, Path]) -> None:
    host, _ = v1
    found = host.detect()
    job = found.limit(["true"], 64, "a")
    assert job.cgroup is not None
    (job.cgroup / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    (job.cgroup / "memory.failcnt").write_text("12")
    job.release()
    assert job.oom_kills is None and job.hit_limit
    assert job.oom_killed(sigkilled=True) and not job.oom_killed(sigkilled=False)
    found.close()


def test_v1_co_mounted_controller_and_a_container_without_cgroup_namespace(tmp_path: Path) -> None:
    host = Host(tmp_path, 1)
    mount = host.v1("/docker/0123abcd", mount_name="cpu,memory", mounted_as_root=True)
    found = host.detect()
    assert (found.mode, found.base) == (CGROUP_V1, mount / f"titan-{ME}")
    found.close()


def test_v1_without_permission_falls_back(v1: tuple[Host, Path]) -> None:
    host, own = v1
    host.files.fail_on(f"titan-{ME}", errno.EACCES)
    found = host.detect()
    assert found.mode == RLIMIT and "cgroup v1" in found.why and "Permission denied" in found.why
    assert [p for p in own.iterdir() if p.is_dir()] == []


def test_a_job_whose_cgroup_cannot_be_made_gets_the_rlimit(v1: tuple[Host, Path]) -> None:
    host, _ = v1
    found = host.detect()
    host.files.fail_on("job-a/memory.limit_in_bytes", errno.EACCES)
    job = found.limit(["true"], 64, "a")
    assert job.mode == RLIMIT and job.cgroup is None
    assert job.argv == memory.memory_limited(["true"], 64)
    assert found.base is not None and [p for p in found.base.iterdir() if p.is_dir()] == []
    found.close()


def test_start_removes_what_earlier_workers_left(v1: tuple[Host, Path]) -> None:
    host, own = v1
    mine = make_cgroup(own / f"titan-{ME}", 1)  # an earlier worker that had this pid
    make_cgroup(mine / "job-old", 1, pids=(7100,))
    gone = make_cgroup(own / f"titan-{OTHER}", 1)  # a worker that is gone
    make_cgroup(gone / "job-x", 1)
    make_cgroup(own / f"titan-{OTHER + 1}" / "job-busy", 1, pids=(7200,))  # gone, a job not yet reaped
    alive = make_cgroup(own / f"titan-{ALIVE}", 1)  # another worker, running
    make_cgroup(alive / "job-y", 1, pids=(7300,))
    found = host.detect()
    assert found.mode == CGROUP_V1
    assert host.files.killed == [7100]  # only this pid's leftovers are killed
    assert not (mine / "job-old").exists() and not gone.exists()
    assert (own / f"titan-{OTHER + 1}" / "job-busy").exists()  # the reaper's, not ours
    assert (alive / "job-y").exists()
    found.close()
    assert not (own / f"titan-{ME}").exists()


def test_a_cgroup_that_will_not_empty_is_left_and_removed_later(
    v1: tuple[Host, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, _ = v1
    monkeypatch.setattr(memory, "REMOVE_WAIT_S", 0.05)
    found = host.detect()
    job = found.limit(["true"], 64, "a")
    assert job.cgroup is not None
    host.files.write(job.cgroup / "cgroup.procs", "7400")
    host.files.stubborn.add(7400)  # in uninterruptible sleep, say
    job.release()
    assert job.cgroup.exists()
    host.files.stubborn.clear()
    later = found.limit(["true"], 64, "b")  # each new job tries the leftovers again
    assert not job.cgroup.exists()
    later.release()
    found.close()
    assert found.base is not None and not found.base.exists()


def test_close_kills_running_jobs_and_then_jobs_get_the_rlimit(v1: tuple[Host, Path]) -> None:
    host, _ = v1
    found = host.detect()
    job = found.limit(["sleep", "100"], 64, "a")
    assert job.cgroup is not None
    host.files.write(job.cgroup / "cgroup.procs", "7500")
    found.close()
    found.close()
    assert host.files.killed == [7500] and found.base is not None and not found.base.exists()
    assert found.limit(["true"], 64, "b").mode == RLIMIT


def test_a_job_of_another_user_may_move_itself_into_its_cgroup(tmp_path: Path) -> None:
    host = Host(tmp_path, 1)
    host.v1("/a")
    found = host.detect()
    job = found.limit(["id"], 64, "a", uid=65534)
    assert job.cgroup is not None and host.files.chowned == {job.cgroup / "cgroup.procs": 65534}
    job.release()
    found.close()

    host2 = Host(tmp_path / "v2", 2)
    host2.v2("/titan.service")
    found = host2.detect()
    job = found.limit(["id"], 64, "a", uid=65534)
    assert found.base is not None and job.cgroup is not None
    # v2 asks for write access to the common ancestor of the leaf and the job's cgroup too
    assert host2.files.chowned == {job.cgroup / "cgroup.procs": 65534, found.base / "cgroup.procs": 65534}
    job.release()
    found.close()

    host3 = Host(tmp_path / "v2root", 2)
    host3.v2("/")
    found = host3.detect()
    assert found.limit(["id"], 64, "a", uid=65534).mode == RLIMIT  # the root cgroup is not ours to give
    found.close()


REASONS: list[tuple[str, str, bool, Callable[[JobMemory], None], str]] = [
    (
        CGROUP_V1,
        "killed by SIGKILL",
        True,
        lambda m: setattr(m, "oom_kills", 1),
        "killed by the out-of-memory killer: it used more than its 200 MB (resources.memory)",
    ),
    (
        CGROUP_V2,
        "exit code 1",
        False,
        lambda m: setattr(m, "oom_kills", 1),
        "exit code 1 after the out-of-memory killer killed one of its processes: "
        "the job used more than its 200 MB (resources.memory)",
    ),
    (
        CGROUP_V2,
        "killed by SIGKILL",
        True,
        lambda m: setattr(m, "oom_kills", 0),
        "killed by SIGKILL, not by the out-of-memory killer",
    ),
    (CGROUP_V1, "exit code 3", False, lambda m: setattr(m, "oom_kills", 0), "exit code 3"),
    (
        RLIMIT,
        "exit code 1",
        False,
        lambda m: None,
        "exit code 1 (its address space was limited to 200 MB by resources.memory)",
    ),
    (
        RLIMIT,
        "killed by SIGKILL",
        True,
        lambda m: None,
        "killed by SIGKILL, likely out of memory (its address space was limited to 200 MB by resources.memory)",
    ),
]


@pytest.mark.parametrize(("mode", "reason", "sigkilled", "set_up", "said"), REASONS)
def test_failure_reasons(
    mode: str, reason: str, sigkilled: bool, set_up: Callable[[JobMemory], None], said: str
) -> None:
    job = JobMemory([], 200, mode)
    set_up(job)
    assert job.explain(reason, sigkilled) == said


@pytest.mark.parametrize(
    "argv",
    [
        ["printf", "%s|", "two words", "it's", '"quoted"', "$HOME", "*", "-n", ""],
        ["sh", "-c", 'echo "$0 $1"', "a b", "c;d"],
    ],
)
def test_the_join_wrapper_passes_the_argv_through_untouched(tmp_path: Path, argv: list[str]) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    wrapped = subprocess.run(joining(argv, procs), capture_output=True, text=True, cwd=tmp_path)
    direct = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (0, direct.stdout, direct.stderr)
    assert procs.read_text().strip().isdigit()  # the pid the job kept


def test_the_join_wrapper_does_not_run_the_job_outside_its_cgroup(tmp_path: Path) -> None:
    done = subprocess.run(
        joining([sys.executable, "-c", "print('ran')"], tmp_path / "gone" / "cgroup.procs"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 125 and done.stdout == ""
    assert "titan: cannot move the job into its memory cgroup" in done.stderr
