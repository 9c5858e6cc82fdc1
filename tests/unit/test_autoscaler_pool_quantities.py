"""A pool's quantities from cluster.yaml to the worker's command line: parsed and checked with the
file's other keys, and passed by every provider (local argv, SSH argv, webhook body) so that the
worker advertises exactly what the autoscaler planned on."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from titan_runtime import config
from titan_runtime.clusterconfig import ClusterConfigError, load_cluster_file
from titan_runtime.core.resources import parse_memory
from titan_runtime.providers.base import LaunchRequest
from titan_runtime.providers.local import LocalProvider
from titan_runtime.providers.ssh import BootstrapOptions, SshTarget, worker_argv
from titan_runtime.providers.webhook import WebhookProvider


def load(tmp_path: Path, pools: str) -> Any:
    path = tmp_path / "cluster.yaml"
    path.write_text("pools:\n" + textwrap.indent(textwrap.dedent(pools), "  "))
    return load_cluster_file(path)


def errors_of(tmp_path: Path, pools: str) -> list[str]:
    with pytest.raises(ClusterConfigError) as caught:
        load(tmp_path, pools)
    return caught.value.errors


def test_pools_declare_cpus_memory_and_gpu_devices(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        """
        - {name: gpu, provider: local, cpus: 8, memory: 16G, gpus: [0, 1]}
        - {name: text, provider: local, gpus: "0,1,GPU-8f2c"}
        - {name: none, provider: local, gpus: none, memory: 512}
        - {name: empty, provider: local, gpus: []}
        - {name: vague, provider: local}
        """,
    )
    gpu, text, none, empty, vague = (p.spec for p in loaded.pools)
    assert (gpu.cpus, gpu.memory_mb, gpu.gpus) == (8, 16384, ("0", "1"))
    assert text.gpus == ("0", "1", "GPU-8f2c")
    assert (none.gpus, none.memory_mb) == ((), 512)  # a bare number of memory is MiB, as for jobs
    assert empty.gpus == ()
    assert (vague.cpus, vague.memory_mb, vague.gpus) == (None, None, None)  # not declared: unknown


def test_bad_quantities_are_listed_with_their_keys(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """
        - {name: a, provider: local, gpus: 2}
        - {name: b, provider: local, cpus: 0.5}
        - {name: c, provider: local, cpus: 0}
        - {name: d, provider: local, memory: lots}
        - {name: e, provider: local, memory: 0}
        - {name: f, provider: local, gpus: "0,0"}
        - {name: g, provider: local, gpus: "0,not an id"}
        """,
    )
    assert errors == [
        'pools[0] (a).gpus: expected the device ids its workers will have, like [0, 1], "0,1" or none '
        "(not a count: [0, 1] is two GPUs), got 2",
        "pools[1] (b).cpus: expected a whole number of CPUs from 1 to 1,000,000, got 0.5",
        "pools[2] (c).cpus: expected a whole number of CPUs from 1 to 1,000,000, got 0",
        "pools[3] (d).memory must be a size such as 512M, 8G or 1.5T (a bare number is MiB), not 'lots'",
        "pools[4] (e).memory: must be at least 1M, got 0",
        "pools[5] (f).gpus: a device is listed twice in '0,0'",
        "pools[6] (g).gpus: 'not an id' is not a device id; give indices or UUIDs separated by commas, "
        "like 0,1, or none",
    ]


def request(**quantities: Any) -> LaunchRequest:
    return LaunchRequest("gpu-1a2b3c", "gpu", "local", ("CPU",), 2, "127.0.0.1:9", "token", **quantities)


def test_the_worker_is_started_with_exactly_what_the_pool_declares() -> None:
    args = request(cpus=8, memory_mb=16384, gpus=("0", "1")).worker_args()
    assert args[-6:] == ["--cpus", "8", "--memory", "16384M", "--gpus", "0,1"]
    assert request(gpus=()).worker_args()[-2:] == ["--gpus", "none"]  # declared none: it offers none
    plain = request().worker_args()
    assert not {"--cpus", "--memory", "--gpus"} & set(plain)  # not declared: what it detects
    # The memory flag reads back as what was declared.
    assert parse_memory("16384M") == 16384


def test_the_local_provider_passes_them_on_its_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []

    class Proc:
        pid = 4242

    def start_worker(argv: list[str], token: str, **popen: Any) -> Proc:
        started.append(argv)
        return Proc()

    monkeypatch.setattr(config, "start_worker", start_worker)
    provider = LocalProvider({"worker_args": ["--kill-grace", "3"]}, tmp_path)
    asyncio.run(provider.launch(request(cpus=2, memory_mb=1024, gpus=("0", "1"))))
    (argv,) = started
    text = " ".join(argv)
    assert "--cpus 2 --memory 1024M --gpus 0,1" in text and text.endswith("--kill-grace 3")


def test_the_ssh_provider_passes_them_on_the_remote_command_line() -> None:
    options = BootstrapOptions(
        target=SshTarget.parse("ubuntu@gpu-1"),
        master="10.0.0.1:9090",
        token="t",
        data_dir=Path("/nowhere"),
        tags=("CPU",),
        slots=2,
        cpus=16,
        memory_mb=65536,
        gpus=("0", "1", "2", "3"),
        pool="gpu",
        launch_id="gpu-1a2b3c",
        worker_args=("--kill-grace", "3"),
    )
    args = worker_argv(
        options, "gpu-1a2b3c", "10.0.0.1:9090", "/home/u/.titan-worker", ["--tls-ca", "ca.pem"]
    )
    text = " ".join(args)
    assert "--slots 2 --cpus 16 --memory 65536M --gpus 0,1,2,3 --tls-ca ca.pem --kill-grace 3" in text
    bare = BootstrapOptions(
        target=SshTarget.parse("ubuntu@gpu-1"), master="m:1", token="t", data_dir=Path("/nowhere")
    )
    assert not {"--cpus", "--memory", "--gpus"} & set(worker_argv(bare, "n", "m:1", "/r", []))


def test_the_webhook_request_says_what_the_worker_must_offer(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    async def post(self: WebhookProvider, payload: dict[str, Any]) -> dict[str, Any]:
        sent.append(payload)
        return {"instance": "vm-1"}

    monkeypatch.setattr(WebhookProvider, "post", post)
    monkeypatch.setenv("HOOK_SECRET_FOR_TEST", "x" * 32)
    provider = WebhookProvider({"url": "https://hook.invalid/", "secret_env": "HOOK_SECRET_FOR_TEST"}, "gpu")
    asyncio.run(provider.launch(request(cpus=8, memory_mb=16384, gpus=("0", "1"))))
    asyncio.run(provider.launch(request()))
    declared, vague = sent
    assert (declared["cpus"], declared["memory_mb"], declared["gpus"]) == (8, 16384, ["0", "1"])
    assert declared["worker_args"][-6:] == ["--cpus", "8", "--memory", "16384M", "--gpus", "0,1"]
    assert (vague["cpus"], vague["memory_mb"], vague["gpus"]) == (None, None, None)
