"""Autoscaled local pools with real master and worker processes: grow with a burst, shrink when idle,
and back off from workers that never register (the original Titan's failures 7 and 15)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.helpers import PYTHON, pid_alive, wait_until
from titan_runtime import TitanJob

pytestmark = pytest.mark.integration

FAST = ("--heartbeat-interval", "0.2", "--lease-timeout", "3")


def cluster_file(tmp_path: Path, pools: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text("autoscaler:\n  interval: 0.1\npools:\n" + textwrap.indent(textwrap.dedent(pools), "  "))
    return path


def events(client, kind: str | None = None) -> list:
    return [e for e in client.autoscaler_events() if kind is None or e.kind == kind]


def test_a_burst_grows_the_pool_to_its_max_and_it_shrinks_to_zero_when_idle(
    make_cluster, tmp_path: Path
) -> None:
    config = cluster_file(
        tmp_path,
        """
        - name: burst
          provider: local
          tags: [burst]
          slots: 1
          min: 0
          max: 3
          idle_timeout: 1.5
          max_launching: 3
        """,
    )
    cluster = make_cluster(master_args=(*FAST, "--cluster", str(config)))
    client = cluster.client
    status = client.autoscaler_status()
    assert status.enabled and [p.name for p in status.pools] == ["burst"]
    assert status.pools[0].workers == 0

    jobs = [
        client.submit_job(TitanJob(command=["python3", "-c", "import time; time.sleep(0.4)"], tags=["burst"]))
        for _ in range(20)
    ]
    seen: dict[str, int] = {}

    def pool_workers() -> list:
        alive = [w for w in client.list_workers() if w.pool == "burst" and w.state == "ALIVE"]
        for w in alive:
            seen[w.name] = w.pid
        return alive

    wait_until(lambda: len(pool_workers()) == 3, 60, what="the pool to grow to 3 workers")
    for job in jobs:
        assert client.wait(job, 120).state == "SUCCEEDED"
    assert len(events(client, "launch")) == 3  # never above max
    assert len(events(client, "registered")) == 3

    # `workers --json` shows the pool and the provider.
    listed = json.loads(cluster.cli("workers", "--json").stdout)
    assert {(w["pool"], w["provider"]) for w in listed if w["name"] in seen} == {("burst", "local")}

    # Idle for idle_timeout: every worker is drained, leaves, and its process ends for good.
    wait_until(lambda: not pool_workers(), 60, what="the pool to shrink to 0")
    wait_until(lambda: len(events(client, "left")) == 3, 30, what="the 3 descaled workers to leave")
    assert all(re.match(r"descaled worker \S+ left", e.message) for e in events(client, "left"))
    drains = events(client, "drain")
    assert len(drains) == 3 and all("idle for" in e.message for e in drains)
    for name, pid in seen.items():
        wait_until(lambda pid=pid: not pid_alive(pid), 30, what=f"worker {name} (pid {pid}) to exit")
    states = {w.name: w.state for w in client.list_workers() if w.name in seen}
    assert set(states.values()) == {"LEFT"}, states
    status = client.autoscaler_status().pools[0]
    assert (status.workers, status.launching, status.draining) == (0, 0, 0)
    assert len(events(client, "launch")) == 3  # nothing came back, nothing was restarted

    text = cluster.cli("autoscaler", "events").stdout
    assert "descaling worker" in text and "starting a worker: " in text


def test_workers_that_never_register_are_stopped_and_the_pool_backs_off(make_cluster, tmp_path: Path) -> None:
    # A "python" that starts but never registers (say, it cannot reach the master).
    never = tmp_path / "never-registers"
    never.write_text("#!/bin/sh\nexec sleep 600\n")
    never.chmod(never.stat().st_mode | stat.S_IXUSR)
    config = cluster_file(
        tmp_path,
        f"""
        - name: stuck
          provider: local
          python: {never}
          tags: [stuck]
          max: 3
          register_timeout: 1
          backoff_initial: 0.5
          backoff_max: 1
        """,
    )
    cluster = make_cluster(master_args=(*FAST, "--cluster", str(config)))
    client = cluster.client
    job = client.submit_job(TitanJob(command=["true"], tags=["stuck"]))
    master = psutil.Process(cluster.master.pid)

    def children() -> list[psutil.Process]:
        alive = []
        for child in master.children():
            try:  # one that exits between the listing and this look is not alive either
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
            except psutil.NoSuchProcess:
                pass
        return alive

    most = 0

    def failed_twice() -> bool:
        nonlocal most
        most = max(most, len(children()))
        return len(events(client, "launch_failed")) >= 2

    wait_until(failed_twice, 30, what="two launches to fail")
    assert most <= 1  # one at a time: a failed launch is stopped before the next (after a backoff)
    failures = events(client, "launch_failed")
    assert "did not register within 1s (register_timeout); stopped it" in failures[0].message
    kinds = [e.kind for e in events(client) if e.kind in ("launch", "launch_failed", "backoff")]
    assert kinds[:6] == ["launch", "launch_failed", "backoff", "launch", "launch_failed", "backoff"]
    # Each stopped launch's process is gone.
    stopped = {e.launch_id for e in failures}
    for proc in children():
        assert not any(launch in " ".join(proc.cmdline()) for launch in stopped)
    assert client.get_job(job).state == "READY"
    status = client.autoscaler_status().pools[0]
    assert status.failures >= 2
    assert os.path.exists(cluster.data_dir / "pools")


THIRD_PARTY = '''
from titan_runtime.providers.local import LocalProvider


class HereProvider(LocalProvider):
    """Local workers, from a package that is not Titan: found through its entry point."""

    settings_keys = {**LocalProvider.settings_keys, "greeting": str}

    @classmethod
    def check(cls, settings, values, where):
        return [] if settings.get("greeting") else [f"{where}.greeting: required for provider here"]
'''


def test_a_provider_from_another_package_is_found_through_its_entry_point(
    make_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    info = site / "thirdparty_titan-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "thirdparty_titan.py").write_text(THIRD_PARTY)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-titan\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[titan_runtime.providers]\nhere = thirdparty_titan:HereProvider\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    pool = "- name: elsewhere\n  provider: here\n  tags: [elsewhere]\n  max: 1\n"
    refused = subprocess.run(
        [PYTHON, "-m", "titan_runtime", "master", "--cluster", str(cluster_file(tmp_path, pool)),
         "--port", "0", "--data-dir", str(tmp_path / "refused")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0, refused.stderr
    assert "pools[0] (elsewhere).greeting: required for provider here" in refused.stderr
    config = cluster_file(tmp_path, pool + "  greeting: hello\n")
    cluster = make_cluster(master_args=(*FAST, "--cluster", str(config)))
    job = cluster.client.submit_job(TitanJob(command=["true"], tags=["elsewhere"]))
    assert cluster.client.wait(job, 60).state == "SUCCEEDED"
    assert [(p.name, p.provider) for p in cluster.client.autoscaler_status().pools] == [("elsewhere", "here")]
