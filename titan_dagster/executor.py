"""`titan_executor`: run every step of a Dagster job as a Titan job.

    from titan_dagster import titan_executor

    defs = Definitions(assets=[...], executor=titan_executor)
    # or: @job(executor_def=titan_executor)

and, in the run config or the launchpad::

    execution:
      config:
        address: titan-master:9090      # default: TITAN_ADDRESS / TITAN_HOST+TITAN_PORT / 127.0.0.1:9090
        token: {env: TITAN_TOKEN}        # default: TITAN_TOKEN, then <TITAN_DATA_DIR or ~/.titan>/token
        requirement: dagster             # worker tags every step needs (comma-separated)
        priority: 5
        env: {MY_SETTING: "1"}

Op tags refine it per step: `titan/requirement` (added tags), `titan/priority`, `titan/timeout`
(seconds) and `titan/resources` (`{"slots": 2, "cpus": 2, "memory": "8G", "gpus": 1}` or
`slots=2,cpus=2,memory=8G,gpus=1`: what the step holds on its worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dagster import (
    DagsterEvent,
    Executor,
    Field,
    InitExecutorContext,
    IntSource,
    Noneable,
    Permissive,
    StringSource,
    executor,
    multiple_process_executor_requirements,
)

from titan_dagster._compat import (
    RetryMode,
    StepDelegatingExecutor,
    get_retries_config,
    get_tag_concurrency_limits_config,
)
from titan_dagster.errors import TitanConfigError
from titan_dagster.placement import Placement, parse_env, parse_priority, parse_requirement, parse_timeout
from titan_dagster.step_handler import StepHandlerSettings, TitanStepHandler

EXECUTOR_CONFIG: dict[str, Any] = {
    "address": Field(
        Noneable(StringSource),
        is_required=False,
        default_value=None,
        description="Titan master HOST:PORT. Default: TITAN_ADDRESS, TITAN_HOST/TITAN_PORT, then 127.0.0.1:9090.",
    ),
    "token": Field(
        Noneable(StringSource),
        is_required=False,
        default_value=None,
        description="Cluster token. Default: TITAN_TOKEN, then the token file in TITAN_DATA_DIR (~/.titan).",
    ),
    "tls_ca": Field(
        Noneable(StringSource),
        is_required=False,
        default_value=None,
        description="Path of the cluster's CA certificate: dial the master with TLS. Default: TITAN_TLS_CA.",
    ),
    "tls_cert": Field(
        Noneable(StringSource),
        is_required=False,
        default_value=None,
        description="Path of a client certificate, for a master that requires one. Default: TITAN_TLS_CERT.",
    ),
    "tls_key": Field(
        Noneable(StringSource),
        is_required=False,
        default_value=None,
        description="Path of its key. Default: TITAN_TLS_KEY.",
    ),
    "requirement": Field(
        Noneable(StringSource),
        is_required=False,
        default_value=None,
        description="Worker tag(s) every step needs, comma-separated (op tag titan/requirement adds to it).",
    ),
    "priority": Field(
        IntSource,
        is_required=False,
        default_value=1,
        description="Titan priority of every step; higher runs first (op tag titan/priority overrides).",
    ),
    "timeout": Field(
        Noneable(float),
        is_required=False,
        default_value=None,
        description="Seconds after which Titan kills a step (op tag titan/timeout overrides). Default: none.",
    ),
    "env": Field(
        Permissive(),
        is_required=False,
        default_value={},
        description="Environment variables for every step process, on top of the worker's environment.",
    ),
    "health_check_interval": Field(
        int,
        is_required=False,
        default_value=10,
        description="Seconds between checks that each running step's Titan job is still alive.",
    ),
    "poll_interval": Field(
        float,
        is_required=False,
        default_value=0.5,
        description="Seconds between reads of the run's event log for step results.",
    ),
    "cancel_timeout": Field(
        float,
        is_required=False,
        default_value=60.0,
        description="Seconds run termination waits for each step's processes to be gone.",
    ),
    "warm": Field(
        bool,
        is_required=False,
        default_value=True,
        description="Fork each step from a launcher on its worker that has imported Dagster "
        "(docs/dagster.md, 'Warm steps'); false: each step imports it itself.",
    ),
    "retries": get_retries_config(),
    "max_concurrent": Field(
        Noneable(int),
        is_required=False,
        default_value=None,
        description="Most steps of one run in flight at once. Default: no limit beyond Titan's slots.",
    ),
    "tag_concurrency_limits": get_tag_concurrency_limits_config(),
}


class TitanStepDelegatingExecutor(StepDelegatingExecutor):
    """Dagster's step-delegating executor, plus one thing: after a step failed, the handler may
    add why its Titan job ended (a Titan timeout, for one, reaches Dagster only as an interrupt)."""

    def __init__(self, step_handler: TitanStepHandler, **kwargs: Any) -> None:
        super().__init__(step_handler, **kwargs)
        self._titan = step_handler

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[DagsterEvent]:
        for event in super().execute(plan_context, execution_plan):
            yield event
            if event.is_step_failure and event.step_key:
                data = event.step_failure_data
                message = data.error.message if data is not None and data.error is not None else ""
                self._titan.explain_failure(
                    plan_context.for_step(execution_plan.get_step_by_key(event.step_key)),
                    plan_context.run_id,
                    event.step_key,
                    message,
                )


def settings_from_config(config: dict[str, Any]) -> StepHandlerSettings:
    """Executor config -> handler settings, every value checked (TitanConfigError says what is wrong)."""
    where = "titan_executor config"
    if config.get("health_check_interval", 10) < 1:
        raise TitanConfigError(f"{where}: health_check_interval must be at least 1 second")
    if config.get("poll_interval", 0.5) <= 0:
        raise TitanConfigError(f"{where}: poll_interval must be more than 0 seconds")
    return StepHandlerSettings(
        address=config.get("address"),
        token=config.get("token"),
        tls_ca=config.get("tls_ca"),
        tls_cert=config.get("tls_cert"),
        tls_key=config.get("tls_key"),
        placement=Placement(
            requirement=parse_requirement(config.get("requirement"), f"{where}, requirement"),
            priority=parse_priority(config.get("priority", 1), f"{where}, priority"),
            timeout=parse_timeout(config.get("timeout"), f"{where}, timeout"),
        ),
        env=parse_env(config.get("env"), f"{where}, env"),
        cancel_timeout=float(config.get("cancel_timeout", 60.0)),
        warm=bool(config.get("warm", True)),
    )


@executor(
    name="titan",
    config_schema=EXECUTOR_CONFIG,
    requirements=multiple_process_executor_requirements(),
)
def titan_executor(init_context: InitExecutorContext) -> Executor:
    """Runs each step as a Titan job on a worker chosen by the step's tags (see module docstring)."""
    config = dict(init_context.executor_config)
    settings = settings_from_config(config)
    return TitanStepDelegatingExecutor(
        TitanStepHandler(settings),
        retries=RetryMode.from_config(config["retries"]) or RetryMode.ENABLED,
        sleep_seconds=float(config["poll_interval"]),
        check_step_health_interval_seconds=int(config["health_check_interval"]),
        max_concurrent=config.get("max_concurrent"),
        tag_concurrency_limits=config.get("tag_concurrency_limits"),
    )
