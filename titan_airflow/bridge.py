"""Start Airflow DAG runs from Titan and wait for them, through Airflow's REST API.

This is the way back: a Titan job, an agent or a shell (`titan-runtime airflow trigger`) asks a
running Airflow (its `airflow api-server`) to run a DAG, and can wait for the run's end state.
It uses only apache-airflow-client, never Airflow itself, so it works inside a Titan job on a
worker where Airflow is not installed.

Where Airflow is and who we are: explicit arguments, else TITAN_AIRFLOW_URL (default
http://127.0.0.1:8080), TITAN_AIRFLOW_TOKEN (an API access token), or TITAN_AIRFLOW_USERNAME and
TITAN_AIRFLOW_PASSWORD (exchanged for a token at the api-server's /auth/token).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import airflow_client.client as af
from airflow_client.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

DEFAULT_URL = "http://127.0.0.1:8080"
TERMINAL_STATES = frozenset({"success", "failed"})


class AirflowBridgeError(Exception):
    """Airflow refused or could not be reached; the message says what to check."""


@dataclass
class DagRunInfo:
    """One DAG run as Airflow reports it. `state` is queued, running, success or failed."""

    dag_id: str
    run_id: str
    state: str
    conf: dict[str, Any] = field(default_factory=dict)
    start_date: str | None = None
    end_date: str | None = None
    tasks: dict[str, str] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "state": self.state,
            "conf": self.conf,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "tasks": self.tasks,
        }


def _state(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class AirflowBridge:
    """A client of one Airflow api-server. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        access_token: str | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.url = (url or os.environ.get("TITAN_AIRFLOW_URL") or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise AirflowBridgeError(
                f"Airflow URL {self.url!r} must start with http:// or https:// (e.g. {DEFAULT_URL})"
            )
        self._username = username or os.environ.get("TITAN_AIRFLOW_USERNAME")
        self._password = password or os.environ.get("TITAN_AIRFLOW_PASSWORD")
        self._token = access_token or os.environ.get("TITAN_AIRFLOW_TOKEN")
        if self._username and not self._password:
            raise AirflowBridgeError(
                "an Airflow username needs a password: pass --password or set TITAN_AIRFLOW_PASSWORD"
            )
        self.request_timeout = request_timeout
        self._api: af.ApiClient | None = None

    # ------------------------------------------------------------------ plumbing

    def _fetch_token(self) -> str | None:
        """Exchange username and password for an access token (Airflow 3's /auth/token)."""
        if not self._username:
            return None
        body = json.dumps({"username": self._username, "password": self._password}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as response:
                token = json.loads(response.read().decode()).get("access_token")
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AirflowBridgeError(
                    f"Airflow at {self.url} refused user {self._username!r}: check the username and password"
                ) from None
            raise AirflowBridgeError(
                f"Airflow at {self.url} /auth/token answered {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from None
        if not token:
            raise AirflowBridgeError(f"Airflow at {self.url} /auth/token returned no access_token")
        return str(token)

    def _client(self) -> af.ApiClient:
        if self._api is None:
            token = self._token or self._fetch_token()
            configuration = af.Configuration(host=self.url, access_token=token)
            configuration.retries = 2
            self._api = af.ApiClient(configuration)
        return self._api

    def _unreachable(self, exc: BaseException) -> AirflowBridgeError:
        return AirflowBridgeError(
            f"cannot reach Airflow at {self.url} ({type(exc).__name__}): is `airflow api-server` running "
            "there? Set the address with --url or TITAN_AIRFLOW_URL"
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=self.request_timeout, **kwargs)
        except ApiException as exc:
            raise self._api_error(what, exc) from None
        except (Urllib3Error, OSError) as exc:
            raise self._unreachable(exc) from None

    def _api_error(self, what: str, exc: ApiException) -> AirflowBridgeError:
        detail = exc.body or exc.reason or ""
        try:
            detail = json.loads(detail).get("detail", detail)
        except (ValueError, AttributeError):
            pass
        if exc.status == 401:
            hint = (
                "give credentials: TITAN_AIRFLOW_TOKEN, or TITAN_AIRFLOW_USERNAME and TITAN_AIRFLOW_PASSWORD"
            )
            return AirflowBridgeError(f"Airflow at {self.url} wants authentication to {what}: {hint}")
        if exc.status == 403:
            return AirflowBridgeError(f"Airflow at {self.url} does not allow this user to {what}: {detail}")
        if exc.status == 404:
            return AirflowBridgeError(
                f"cannot {what}: {detail} (is the DAG in Airflow's DAGs folder and parsed? `airflow dags list`)"
            )
        return AirflowBridgeError(f"cannot {what}: Airflow answered {exc.status}: {detail}")

    def close(self) -> None:
        self._api = None  # the generated client holds no resources that need closing

    def __enter__(self) -> AirflowBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ DAG runs

    def trigger(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        run_id: str | None = None,
        note: str | None = None,
    ) -> DagRunInfo:
        """Ask Airflow to run `dag_id` now with `conf`; return the new run (usually queued)."""
        if conf is not None and not isinstance(conf, dict):
            raise AirflowBridgeError(f"conf must be a JSON object (a dict), not {type(conf).__name__}")
        body = af.TriggerDAGRunPostBody(logical_date=None, conf=conf or {}, dag_run_id=run_id, note=note)
        response = self._call(
            f"trigger DAG {dag_id!r}", af.DagRunApi(self._client()).trigger_dag_run, dag_id, body
        )
        return self._info(response)

    def get(self, dag_id: str, run_id: str, with_tasks: bool = False) -> DagRunInfo:
        """The run's current state (and with_tasks: each task's state)."""
        response = self._call(
            f"read run {run_id!r} of DAG {dag_id!r}", af.DagRunApi(self._client()).get_dag_run, dag_id, run_id
        )
        info = self._info(response)
        if with_tasks:
            info.tasks = self.task_states(dag_id, run_id)
        return info

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """Each task instance's state in the run, by task id (mapped tasks as TASK[INDEX])."""
        response = self._call(
            f"list the tasks of run {run_id!r}",
            af.TaskInstanceApi(self._client()).get_task_instances,
            dag_id,
            run_id,
        )
        states = {}
        for ti in response.task_instances:
            name = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            states[name] = _state(ti.state) or "none"
        return states

    def wait(
        self, dag_id: str, run_id: str, timeout: float | None = None, poll_interval: float = 2.0
    ) -> DagRunInfo:
        """Poll until the run is success or failed; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.get(dag_id, run_id)
            if info.terminal:
                info.tasks = self.task_states(dag_id, run_id)
                return info
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"DAG run {dag_id}/{run_id} is still {info.state} after {timeout:g}s")
            pause = (
                poll_interval
                if deadline is None
                else min(poll_interval, max(0.0, deadline - time.monotonic()))
            )
            time.sleep(pause)

    @staticmethod
    def _info(response: Any) -> DagRunInfo:
        return DagRunInfo(
            dag_id=response.dag_id,
            run_id=response.dag_run_id,
            state=_state(response.state),
            conf=dict(response.conf or {}),
            start_date=_iso(response.start_date),
            end_date=_iso(response.end_date),
        )


def trigger_dag_run(
    dag_id: str,
    conf: dict[str, Any] | None = None,
    *,
    wait: bool = False,
    timeout: float | None = None,
    poll_interval: float = 2.0,
    run_id: str | None = None,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    access_token: str | None = None,
) -> DagRunInfo:
    """Start a run of `dag_id` (with `conf`) on Airflow; with wait=True, return once it has ended.

    For a Titan job or agent: `trigger_dag_run("etl", {"day": "2026-01-01"}, wait=True).state`.
    Credentials and URL default to TITAN_AIRFLOW_* environment variables (see the module doc).
    """
    with AirflowBridge(url, username, password, access_token) as bridge:
        info = bridge.trigger(dag_id, conf, run_id=run_id)
        if wait:
            info = bridge.wait(dag_id, info.run_id, timeout=timeout, poll_interval=poll_interval)
        return info
