"""Dagster jobs the integration tests run on real Titan workers.

They live in an importable module (not in the test files) because every step runs in a fresh
`python -m dagster api execute_step` process on a Titan worker, which loads the job from here.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from dagster import Config, OpExecutionContext, RetryPolicy, job, op

from titan_dagster import PipesTitanClient, titan_executor


def where() -> dict[str, object]:
    """Proof of where an op ran: the Titan job and worker, and the process (and its parent's
    command line: a worker's launcher names the packages it preloaded)."""
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        parent = []
    return {
        "parent": [part.decode(errors="replace") for part in parent if part],
        "pid": os.getpid(),
        "titan_run": os.environ.get("TITAN_RUN_ID", ""),
        "titan_job": os.environ.get("TITAN_JOB_ID", ""),
        "worker": os.environ.get("TITAN_WORKER_NAME", ""),
    }


# ---------------------------------------------------------------- outputs between steps, routing


@op
def extract() -> list[int]:
    return [3, 1, 4, 1, 5]


@op(tags={"titan/requirement": "GPU", "titan/priority": "7"})
def train(numbers: list[int]) -> dict:
    return {"weights": sum(numbers), **where()}


@op
def evaluate(model: dict) -> dict:
    return {"score": model["weights"] * 2, **where()}


@job(executor_def=titan_executor)
def pipeline_job() -> None:
    evaluate(train(extract()))


# ---------------------------------------------------------------- a crash Dagster cannot report


@op
def crash() -> None:
    print("crash: loading the model", flush=True)
    print("crash: CUDA out of memory (CRASH-MARKER-7f3a)", file=sys.stderr, flush=True)
    os._exit(3)  # no Dagster failure event: only the Titan log knows what happened


@job(executor_def=titan_executor)
def crash_job() -> None:
    crash()


# ---------------------------------------------------------------- retries


@op(retry_policy=RetryPolicy(max_retries=1))
def flaky(context: OpExecutionContext) -> dict:
    if context.retry_number == 0:
        raise RuntimeError("the first attempt fails on purpose")
    return {"retry_number": context.retry_number, **where()}


@job(executor_def=titan_executor)
def retry_job() -> None:
    flaky()


# ---------------------------------------------------------------- termination


class SleeperConfig(Config):
    pid_file: str


@op
def sleeper(config: SleeperConfig) -> None:
    """Starts a grandchild, records both pids, then waits to be terminated."""
    child = subprocess.Popen(["sleep", "300"])
    tmp = config.pid_file + ".tmp"
    Path(tmp).write_text(f"{os.getpid()} {child.pid}")
    os.replace(tmp, config.pid_file)
    print("sleeper: waiting to be terminated", flush=True)
    time.sleep(300)


@job(executor_def=titan_executor)
def sleeper_job() -> None:
    sleeper()


# ---------------------------------------------------------------- output while running


class GateConfig(Config):
    gate: str


@op
def chatty(config: GateConfig) -> str:
    print("chatty: hello from stdout (LOG-MARKER-out)", flush=True)
    print("chatty: hello from stderr (LOG-MARKER-err)", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(config.gate):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.05)
    print("chatty: done (LOG-MARKER-end)", flush=True)
    return "ok"


@job(executor_def=titan_executor)
def chatty_job() -> None:
    chatty()


# ---------------------------------------------------------------- where does a step run?


@op
def whereami() -> dict:
    return where()


@job(executor_def=titan_executor)
def whereami_job() -> None:
    whereami()


# ---------------------------------------------------------------- a Titan timeout


@op(tags={"titan/timeout": "5"})
def overdue() -> None:
    print("overdue: starting a long computation", flush=True)
    time.sleep(120)


@job(executor_def=titan_executor)
def timeout_job() -> None:
    overdue()


# ---------------------------------------------------------------- a step that waits on a Pipes job


class PipesSleeperConfig(Config):
    pid_file: str


@op
def pipes_sleeper(context: OpExecutionContext, config: PipesSleeperConfig) -> None:
    # Titan's defaults: inside a step on Titan, the worker's master and the step's own credential,
    # which may not cancel another Titan run: the executor has to cancel this Pipes job.
    client = PipesTitanClient()
    script = str(Path(__file__).parent / "scripts" / "pipes_sleep.py")
    client.run(context=context, script=script, extras={"pid_file": config.pid_file})


@job(executor_def=titan_executor)
def pipes_sleeper_job() -> None:
    pipes_sleeper()


# ---------------------------------------------------------------- a run whose run worker dies


@op
def first() -> int:
    return 1


@op
def held(config: GateConfig, value: int) -> int:
    deadline = time.monotonic() + 300
    while not os.path.exists(config.gate):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.05)
    return value + 1


@op
def last(value: int) -> int:
    return value + 1


@job(executor_def=titan_executor)
def resumable_job() -> None:
    last(held(first()))


# ---------------------------------------------------------------- a run that fails, then is re-executed


class FragileConfig(Config):
    fixed: str  # a file: the step fails until it exists


@op
def prepare() -> dict:
    return {"value": 20, **where()}


@op
def fragile(config: FragileConfig, prepared: dict) -> dict:
    if not os.path.exists(config.fixed):
        raise RuntimeError("fragile: the bug is not fixed yet (FRAGILE-MARKER)")
    return {"value": prepared["value"] + 1, **where()}


@op
def report(result: dict) -> dict:
    return {"value": result["value"] * 2, **where()}


@job(executor_def=titan_executor)
def fragile_job() -> None:
    report(fragile(prepare()))
