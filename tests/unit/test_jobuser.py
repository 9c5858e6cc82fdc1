"""worker/jobuser.py without processes: who jobs run as, what they can reach, what root reads back."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from titan_runtime.worker import jobuser
from titan_runtime.worker.jobuser import AttemptDir, JobUser, JobUserError, hand_over, open_result, prepare

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
NOBODY = JobUser("nobody", 65534, 65534, (65534,), "/nonexistent")


def test_a_worker_that_is_not_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobuser.os, "geteuid", lambda: 1000)
    with pytest.raises(
        JobUserError, match=r"^--job-user needs a worker started as root: only root can start"
    ):
        JobUser.resolve("nobody")


@ROOT_ONLY
@pytest.mark.parametrize(
    ("value", "why"), [("root", "is root"), ("0", "is root"), ("no-such-user-x", "no such")]
)
def test_root_and_unknown_users_are_refused(value: str, why: str) -> None:
    with pytest.raises(JobUserError, match=why):
        JobUser.resolve(value)


@ROOT_ONLY
def test_a_user_is_resolved_by_name_or_uid_once() -> None:
    entry = pwd.getpwnam("nobody")
    by_name, by_uid = JobUser.resolve("nobody"), JobUser.resolve(str(entry.pw_uid))
    assert by_name == by_uid
    assert (by_name.uid, by_name.gid, by_name.home) == (entry.pw_uid, entry.pw_gid, entry.pw_dir)
    assert entry.pw_gid in by_name.groups
    assert by_name.env() == {"HOME": entry.pw_dir, "USER": "nobody", "LOGNAME": "nobody"}


def test_unreachable_names_the_first_directory_the_user_cannot_pass() -> None:
    top = Path(tempfile.mkdtemp())  # in the system's temp dir, which everyone passes through
    try:
        top.chmod(0o755)
        deep = top / "a" / "b"
        deep.mkdir(parents=True)
        (top / "a").chmod(0o700)
        user = JobUser("u", os.geteuid() + 1, 12345, (12345,), "/")  # neither the owner nor in its group
        assert user.unreachable(deep).startswith(f"{top / 'a'} (mode 0700")
        (top / "a").chmod(0o711)  # passable, not listable
        assert user.unreachable(deep) == ""
    finally:
        shutil.rmtree(top)


def test_the_result_is_read_only_when_it_is_a_regular_file_of_the_job_user(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    assert open_result(path, None) is None  # no result
    os.symlink("/etc/passwd", path)
    with pytest.raises(ValueError, match="symbolic link"):
        open_result(path, None)
    path.unlink()
    os.mkfifo(path)  # opened without blocking, then refused
    with pytest.raises(ValueError, match="not a regular file"):
        open_result(path, None)
    path.unlink()
    path.write_text("{}")
    with pytest.raises(ValueError, match="not the job user's own"):
        open_result(path, os.geteuid() + 1)
    fd = open_result(path, os.geteuid())
    assert fd is not None
    os.close(fd)


@ROOT_ONLY
def test_hand_over_gives_everything_to_the_user_but_the_script_shared_with_the_cache(tmp_path: Path) -> None:
    cached = tmp_path / "cached-script"
    cached.write_text("echo hi")
    where = AttemptDir(tmp_path / "attempt")
    prepare(where)
    assert (where.root.stat().st_mode & 0o777, where.root.stat().st_uid) == (0o700, 0)
    (where.workspace / "sub").mkdir()
    (where.workspace / "sub" / "data").write_text("x")
    os.link(cached, where.workspace / "script.sh")
    os.symlink("/etc", where.workspace / "link")  # lchown: /etc stays root's
    hand_over(where, NOBODY)
    owners = {
        p.relative_to(tmp_path).as_posix(): os.lstat(p).st_uid
        for p in (where.root, where.workspace, where.workspace / "sub", where.workspace / "sub" / "data")
    }
    assert set(owners.values()) == {NOBODY.uid}, owners
    assert os.lstat(where.workspace / "link").st_uid == NOBODY.uid and os.stat("/etc").st_uid == 0
    assert cached.stat().st_uid == 0  # the cache's copy cannot be changed through the job's link
