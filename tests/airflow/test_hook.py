"""TitanHook and the provider registration, in a real Airflow process (a subprocess of the test)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.airflow.harness import AIRFLOW, PYTHON, AirflowHome
from tests.helpers import ProcessCluster

pytestmark = pytest.mark.integration

PROBE = """
import json, os, sys
from titan_airflow import TitanHook

def settings(conn_id):
    try:
        s = TitanHook(conn_id).settings()
        return {"address": s.address, "token": s.token}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}

seen = {conn_id: settings(conn_id) for conn_id in sys.argv[1:]}
seen["test_default"] = TitanHook().test_connection()
seen["test_bad_token"] = TitanHook("titan_bad_token").test_connection()
with TitanHook().get_conn() as client:
    seen["workers"] = [w.name for w in client.list_workers()]
del os.environ["AIRFLOW_CONN_TITAN_DEFAULT"]
seen["fallback"] = settings("titan_default")
with TitanHook().get_conn() as client:
    seen["fallback_address"] = client.address
print(json.dumps(seen))
"""


def conn(**fields: object) -> str:
    return json.dumps({"conn_type": "titan", **fields})


def test_connection_settings_and_the_test_button(airflow_home: AirflowHome, cluster: ProcessCluster) -> None:
    env = airflow_home.env(
        cluster,
        AIRFLOW_CONN_TITAN_HOSTPORT=conn(host="titan-master.example:7000"),
        AIRFLOW_CONN_TITAN_SCHEME=conn(host="grpc://titan-master.example", port=7001, password="s3cret"),
        AIRFLOW_CONN_TITAN_EMPTY=conn(),
        AIRFLOW_CONN_TITAN_PATH=conn(host="titan-master.example/api"),
        AIRFLOW_CONN_TITAN_BAD_TOKEN=conn(host="127.0.0.1", port=cluster.port, password="not-the-token"),
        TITAN_ADDRESS="127.0.0.1:4242",
    )
    ids = ["titan_default", "titan_hostport", "titan_scheme", "titan_empty", "titan_path", "titan_missing"]
    done = subprocess.run(
        [PYTHON, "-c", PROBE, *ids], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["titan_default"] == {"address": cluster.address, "token": cluster.token}
    assert seen["titan_hostport"] == {"address": "titan-master.example:7000", "token": None}
    assert seen["titan_scheme"] == {"address": "titan-master.example:7001", "token": "s3cret"}
    assert seen["titan_empty"] == {"address": "127.0.0.1:9090", "token": None}
    assert "is not a host name" in seen["titan_path"]["error"]
    missing = seen["titan_missing"]["error"]
    assert missing.startswith(
        "TitanConnectionConfigError: the Airflow connection 'titan_missing' is not defined"
    )
    assert "AIRFLOW_CONN_TITAN_MISSING=" in missing
    ok, message = seen["test_default"]
    assert ok and message == f"Connected to Titan at {cluster.address}: 1 worker(s) alive"
    ok, message = seen["test_bad_token"]
    assert not ok and message
    assert seen["workers"] == ["w1"]
    # No titan_default connection: the SDK's own lookup (TITAN_ADDRESS here) is used.
    assert seen["fallback"] == {"address": None, "token": None}
    assert seen["fallback_address"] == "127.0.0.1:4242"


def test_provider_registers_the_titan_connection_type(airflow_home: AirflowHome) -> None:
    done = subprocess.run(
        [AIRFLOW, "providers", "hooks", "-o", "json"],
        env=airflow_home.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hooks = json.loads(done.stdout[done.stdout.index("[") :])
    [titan] = [h for h in hooks if h["connection_type"] == "titan"]
    assert titan["class"] == "titan_airflow.hooks.TitanHook"
    assert (titan["package_name"], titan["hook_name"]) == ("titan-runtime", "Titan")
