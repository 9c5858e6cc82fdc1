"""Talking to the Titan master on behalf of Dagster: submit idempotently, describe failures, cancel.

Shared by the step handler, the run launcher and the Pipes client so that all three name their
Titan runs the same way, report a failed job the same way (state, reason, worker and the tail of
its output) and cancel the same way (SIGTERM to the process group, SIGKILL after the grace period).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from titan_dagster.placement import Placement
from titan_runtime import InvalidJob, JobNotFound, JobRecord, TitanClient, TitanJob

#: How much of a failed job's output goes into a Dagster failure message.
TAIL_LINES = 40
TAIL_BYTES = 16 * 1024


@dataclass(frozen=True)
class Submission:
    ref: str  # "RUN/JOB": what every client call accepts
    run_id: str
    adopted: bool  # True when a live job of this attempt already existed and is used as is


def connect(
    address: str | None,
    token: str | None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> TitanClient:
    """A client; None for any of them means Titan's usual resolution (env vars, data dir)."""
    return TitanClient(
        address=address or None,
        token=token or None,
        tls_ca=tls_ca or None,
        tls_cert=tls_cert or None,
        tls_key=tls_key or None,
    )


#: What a warm step or run worker asks its worker to have imported before forking it (JobSpec.preload):
#: Dagster, and what opening its instance imports (titan_dagster/warm.py).
WARM_PACKAGES = ("dagster", "titan_dagster.warm")


def submit(
    client: TitanClient,
    *,
    run_id: str,
    job_id: str,
    name: str,
    command: Sequence[str] | None = None,
    script: str | None = None,
    args: Sequence[str] | None = None,
    env: Mapping[str, str],
    placement: Placement,
    group: str,
    labels: Mapping[str, str],
    preload: Sequence[str] = (),
) -> Submission:
    """Submit one job as its own Titan run under `run_id`.

    `preload`: packages the worker's launcher imports before forking the job (WARM_PACKAGES: a
    Dagster process that starts with Dagster imported, and exits without tearing it down).
    Submitting the same spec under the same id returns the existing run (Titan's idempotency);
    a different spec under an id already taken is a re-launch of an attempt whose earlier job
    ended, so it goes under the next free `run_id-rN`. A run id that another credential took
    first (a job guessing the step's id) is never ours: the master refuses it (PermissionDenied)
    and the step fails saying so.
    """
    job = TitanJob(
        job_id=job_id,
        filename=script,
        args=list(args) if args else None,
        command=list(command) if command else None,
        # Warm: forked with Dagster imported, and ending as a multiprocessing child does (threads
        # joined, atexit run, no teardown of Dagster's modules: 0.2-0.4 s a step; docs/dagster.md).
        env={**env, "TITAN_FAST_EXIT": "1"} if preload else dict(env),
        tags=list(placement.requirement),
        priority=placement.priority,
        timeout=placement.timeout,
        slots=placement.slots,
        resources=placement.resources(),
        # Dagster owns retries: a failed or lost attempt is reported to Dagster, whose retry
        # policy decides, and a retry is a new Titan run. Titan only re-places an attempt
        # that never started (its worker vanished before it could).
        retries={"attempts": 1, "max_lost": 0},
        preload=list(preload) or None,
    )
    candidate = run_id
    for relaunch in range(1, 100):
        try:
            submitted = client.submit_dag(
                name, [job], run_id=candidate, labels=dict(labels), agent_run_id=group
            )
            return Submission(f"{submitted}/{job_id}", submitted, adopted=False)
        except InvalidJob:
            try:
                current = client.get_job(f"{candidate}/{job_id}")
            except JobNotFound:
                raise  # the master refused the job itself, not the id: its message says why
            if not current.terminal:
                # A live job for this very attempt: adopt it rather than run the attempt twice.
                return Submission(current.ref, candidate, adopted=True)
            candidate = f"{run_id}-r{relaunch}"
    raise InvalidJob(f"Titan run id {run_id} was re-launched 99 times; refusing to go on")


def tail(client: TitanClient, ref: str, record: JobRecord | None = None, lines: int = TAIL_LINES) -> str:
    """The last lines of the latest attempt's output (stdout and stderr interleaved, as printed)."""
    offset = 0
    if record is not None and record.attempts and record.attempts[-1].log_size > TAIL_BYTES:
        offset = record.attempts[-1].log_size - TAIL_BYTES
    try:
        got = client.read_logs(ref, offset=offset)
    except JobNotFound:
        return ""
    if offset and got:
        got = got[1:]  # the first record read from the middle of the log is cut
    picked = got[-lines:]
    return "\n".join(("[stderr] " if line.stream == "stderr" else "") + str(line) for line in picked)


def describe_end(record: JobRecord) -> str:
    """One sentence: how the job ended and where."""
    where = f" on worker {record.worker_name}" if record.worker_name else ""
    reason = f": {record.reason}" if record.reason else ""
    return f"Titan job {record.ref} {record.state}{where}{reason}"


def describe_failure(client: TitanClient, record: JobRecord) -> str:
    """How the job ended plus the tail of its output: shows crashes before Dagster code ran."""
    text = describe_end(record)
    output = tail(client, record.ref, record)
    if output:
        text += f"\nLast lines of its output (titan-runtime logs {record.ref}):\n{output}"
    else:
        text += "\nIt printed nothing."
    return text
