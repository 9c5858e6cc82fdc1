"""Dagster jobs whose steps ask Titan for quantities through `titan/resources` (the integration
tests of resources run them on a worker with fake GPUs).

Importable (not in the test file): every step runs in a fresh `dagster api execute_step` process
on a Titan worker, which loads the job from here.
"""

import os

from dagster import job, op

from titan_dagster import titan_executor


def devices() -> dict[str, str]:
    """What the step process was given: its devices, and where it ran."""
    return {
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
        "nvidia": os.environ.get("NVIDIA_VISIBLE_DEVICES", "unset"),
        "worker": os.environ.get("TITAN_WORKER_NAME", ""),
        "titan_run": os.environ.get("TITAN_RUN_ID", ""),
    }


@op(tags={"titan/resources": '{"gpus": 1}'})
def one_gpu() -> dict[str, str]:
    return devices()


@op(tags={"titan/resources": "gpus=2,cpus=2,memory=1G"})
def two_gpus() -> dict[str, str]:
    return devices()


@op
def no_gpu() -> dict[str, str]:
    return devices()


@job(executor_def=titan_executor)
def gpu_job() -> None:
    one_gpu()
    two_gpus()
    no_gpu()
