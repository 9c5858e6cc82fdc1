"""`titan-runtime airflow ...`: start Airflow DAG runs from a shell or a Titan job, and watch them.

Loaded lazily by `titan_runtime.cli`, so `titan-runtime` works without the airflow extra.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from titan_airflow.bridge import DEFAULT_URL, AirflowBridge, AirflowBridgeError, DagRunInfo

EXIT_FAILED = 1
EXIT_TIMEOUT = 124


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"titan-runtime: error: {message}", err=True)
    sys.exit(code)


def _parse_conf(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        example = """--conf '{"day": "2026-01-01"}'"""
        raise click.BadParameter(f"not valid JSON ({exc}); example: {example}", param_hint="--conf")
    if not isinstance(value, dict):
        example = """--conf '{"day": "2026-01-01"}'"""
        raise click.BadParameter(
            f"must be a JSON object, not {type(value).__name__}; example: {example}", param_hint="--conf"
        )
    return value


def _airflow_options(fn: Any) -> Any:
    fn = click.option(
        "--access-token", envvar="TITAN_AIRFLOW_TOKEN", help="API access token [env TITAN_AIRFLOW_TOKEN]."
    )(fn)
    fn = click.option(
        "--password", envvar="TITAN_AIRFLOW_PASSWORD", help="Airflow password [env TITAN_AIRFLOW_PASSWORD]."
    )(fn)
    fn = click.option(
        "--username", envvar="TITAN_AIRFLOW_USERNAME", help="Airflow user [env TITAN_AIRFLOW_USERNAME]."
    )(fn)
    fn = click.option(
        "--url",
        envvar="TITAN_AIRFLOW_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="Airflow api-server URL [env TITAN_AIRFLOW_URL].",
    )(fn)
    return fn


def _report(info: DagRunInfo, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    click.echo(f"{info.dag_id} {info.run_id} {info.state}")
    for task_id, state in sorted(info.tasks.items()):
        click.echo(f"  {task_id}: {state}")


@click.group("airflow")
def airflow() -> None:
    """Start Airflow DAG runs and wait for them, through Airflow's REST API.

    \b
    Airflow's address and credentials: --url/TITAN_AIRFLOW_URL, and --access-token/TITAN_AIRFLOW_TOKEN
    or --username/TITAN_AIRFLOW_USERNAME with --password/TITAN_AIRFLOW_PASSWORD.
    """


@airflow.command("trigger")
@click.argument("dag_id")
@click.option("--conf", "conf_text", help="The run's conf, a JSON object.")
@click.option("--run-id", default=None, help="Id of the new run [default: Airflow's].")
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit 0 on success, 1 on failure.")
@click.option(
    "--timeout", type=float, default=None, help="With --wait: give up after this many seconds (exit 124)."
)
@click.option(
    "--poll-interval", type=float, default=2.0, show_default=True, help="With --wait: seconds between checks."
)
@click.option("--json", "as_json", is_flag=True, help="Print the run as a JSON object.")
@_airflow_options
def trigger(
    dag_id: str,
    conf_text: str | None,
    run_id: str | None,
    wait: bool,
    timeout: float | None,
    poll_interval: float,
    as_json: bool,
    url: str,
    username: str | None,
    password: str | None,
    access_token: str | None,
) -> None:
    """Start a run of DAG_ID on Airflow; print `DAG_ID RUN_ID STATE`."""
    conf = _parse_conf(conf_text)
    if poll_interval <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--poll-interval")
    try:
        with AirflowBridge(url, username, password, access_token) as bridge:
            info = bridge.trigger(dag_id, conf, run_id=run_id)
            if wait:
                click.echo(f"Triggered {dag_id} run {info.run_id}; waiting for it to end...", err=True)
                info = bridge.wait(dag_id, info.run_id, timeout=timeout, poll_interval=poll_interval)
    except AirflowBridgeError as exc:
        _fail(str(exc))
    except TimeoutError as exc:
        _fail(str(exc), EXIT_TIMEOUT)
    _report(info, as_json)
    if wait and not info.succeeded:
        sys.exit(EXIT_FAILED)


@airflow.command("status")
@click.argument("dag_id")
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit 0 on success, 1 on failure.")
@click.option(
    "--timeout", type=float, default=None, help="With --wait: give up after this many seconds (exit 124)."
)
@click.option(
    "--poll-interval", type=float, default=2.0, show_default=True, help="With --wait: seconds between checks."
)
@click.option("--json", "as_json", is_flag=True, help="Print the run as a JSON object.")
@_airflow_options
def status(
    dag_id: str,
    run_id: str,
    wait: bool,
    timeout: float | None,
    poll_interval: float,
    as_json: bool,
    url: str,
    username: str | None,
    password: str | None,
    access_token: str | None,
) -> None:
    """Show a DAG run's state and its tasks' states."""
    try:
        with AirflowBridge(url, username, password, access_token) as bridge:
            if wait:
                info = bridge.wait(dag_id, run_id, timeout=timeout, poll_interval=poll_interval)
            else:
                info = bridge.get(dag_id, run_id, with_tasks=True)
    except AirflowBridgeError as exc:
        _fail(str(exc))
    except TimeoutError as exc:
        _fail(str(exc), EXIT_TIMEOUT)
    _report(info, as_json)
    if wait and not info.succeeded:
        sys.exit(EXIT_FAILED)
