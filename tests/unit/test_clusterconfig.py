"""cluster.yaml: checked whole; every error names the file and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from titan_runtime.clusterconfig import ClusterConfigError, load_cluster_file
from titan_runtime.config import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_file(path)
    assert str(path) in str(caught.value)
    return caught.value.errors


def test_a_full_file_loads_with_defaults_and_paths_relative_to_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        master: {port: 9191, bind: 0.0.0.0, heartbeat_interval: 0.5}
        autoscaler: {interval: 2}
        pools:
          - {name: cpu, provider: local, tags: [CPU], slots: 4, min: 1, max: 5, idle_timeout: 120}
          - name: gpu
            provider: ssh
            hosts: [ubuntu@gpu-1, "ubuntu@gpu-2:2222"]
            key: keys/id_ed25519
            tags: GPU
          - {name: cloud, provider: webhook, url: "https://example.invalid/hook", secret_env: HOOK_SECRET}
        """,
    )
    loaded = load_cluster_file(path)
    assert loaded.master == {"port": 9191, "bind": "0.0.0.0", "heartbeat_interval": 0.5}
    assert loaded.interval == 2.0
    cpu, gpu, cloud = loaded.pools
    assert (cpu.spec.tags, cpu.spec.slots, cpu.spec.min, cpu.spec.max) == (frozenset({"CPU"}), 4, 1, 5)
    assert cpu.spec.idle_timeout == 120.0 and cpu.spec.register_timeout == 60.0
    assert gpu.spec.max == 2  # one worker per host
    assert gpu.spec.tags == frozenset({"GPU"})
    assert gpu.settings["key"] == str((tmp_path / "keys" / "id_ed25519").resolve())
    assert gpu.spec.register_timeout == 600.0  # a bootstrap installs a virtualenv
    assert cloud.spec.provider == "webhook" and cloud.settings["secret_env"] == "HOOK_SECRET"


def test_every_error_is_listed_with_its_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        master: {port: nine, colour: blue, metrics_port: 70000}
        pools:
          - {name: cpu, provider: local, min: 3, max: 2, idle_timeout: 0}
          - {name: cpu, provider: local}
          - {name: far, provider: ssh, max: 3, hosts: [u@a, u@b]}
          - {name: hook, provider: webhook, url: ftp://x}
          - {name: bad name, provider: cloud}
          - {name: tags, provider: local, tags: ["no spaces"], hostz: 1}
          - {name: plain, provider: webhook, url: "http://10.0.0.5/hook", secret_env: S}
          - {name: trusted, provider: webhook, url: "http://10.0.0.5/hook", secret_env: S, allow_http: true}
        """,
    )
    errors = errors_of(path)
    expected = [
        "master.port: expected a whole number, got 'nine'",
        "master.colour: unknown key",
        "master.metrics_port: expected a port, 0-65535 (0: any free port), got 70000",
        "pools[0] (cpu).min: 3 is more than max (2)",
        "pools[0] (cpu).idle_timeout: must be more than 0 seconds",
        "pools: the name 'cpu' is used twice",
        "pools[2] (far).max: 3 is more than its 2 host(s)",
        "pools[3] (hook).url: required for provider webhook",
        "pools[3] (hook): a webhook pool needs secret_file or secret_env",
        "pools[4].name: required",
        "pools[4] (#4).provider: expected one of local, ssh, webhook, got 'cloud'",
        "pools[5] (tags).hostz: unknown key for provider local",
        "pools[5] (tags).tags: invalid tag 'no spaces'",
        "pools[6] (plain).url: http://10.0.0.5/hook is plain http, which carries each launch's join token in "
        "clear; use https://, or set allow_http: true where the network is trusted",
    ]
    assert not [e for e in errors if "(trusted)" in e]
    for text in expected:
        assert any(text in e for e in errors), (text, errors)


def test_missing_pools_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    assert any("pools: required" in e for e in errors_of(write(tmp_path, "master: {port: 1}\n")))
    assert any("not valid YAML" in e for e in errors_of(write(tmp_path, "pools: [\n")))
    with pytest.raises(ConfigError, match="cannot read the cluster file"):
        load_cluster_file(tmp_path / "nope.yaml")
