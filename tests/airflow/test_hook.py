"""TitanHook, the provider registration and operator argument checks, in a real Airflow process (a subprocess)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.airflow.harness import AIRFLOW, PYTHON, AirflowHome
from tests.helpers import ProcessCluster
from titan_runtime import certs
from titan_runtime.tls import ClientTls

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
        AIRFLOW_CONN_TITAN_MASTERS=conn(host="titan-a.example:7000, titan-b.example", port=7002),
        AIRFLOW_CONN_TITAN_BAD_TOKEN=conn(host="127.0.0.1", port=cluster.port, password="not-the-token"),
        TITAN_ADDRESS="127.0.0.1:4242",
    )
    ids = ["titan_default", "titan_hostport", "titan_scheme", "titan_empty", "titan_path", "titan_missing",
           "titan_masters"]  # fmt: skip
    done = subprocess.run(
        [PYTHON, "-c", PROBE, *ids], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["titan_default"] == {"address": cluster.address, "token": cluster.token}
    assert seen["titan_hostport"] == {"address": "titan-master.example:7000", "token": None}
    assert seen["titan_scheme"] == {"address": "titan-master.example:7001", "token": "s3cret"}
    assert seen["titan_empty"] == {"address": "127.0.0.1:9090", "token": None}
    assert seen["titan_masters"] == {"address": "titan-a.example:7000,titan-b.example:7002", "token": None}
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


CONFIG_PROBE = """
import json
from titan_airflow import TitanOperator, TitanPipelineOperator

def error(make):
    try:
        make()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None

print(json.dumps({
    "both": error(lambda: TitanOperator(task_id="t", script="a.py", command=["echo"])),
    "neither": error(lambda: TitanOperator(task_id="t")),
    "env": error(lambda: TitanOperator(task_id="t", command=["echo"], env=["A=1"])),
    "timeout": error(lambda: TitanOperator(task_id="t", command=["echo"], timeout=-5)),
    "priority": error(lambda: TitanOperator(task_id="t", command=["echo"], priority="high")),
    "poll": error(lambda: TitanPipelineOperator(task_id="p", pipeline="p.yaml", poll_interval=0)),
    "fine": error(lambda: TitanOperator(task_id="t", command="echo hi", timeout=1.5, project_dir="x")),
}))
"""


def test_bad_operator_arguments_fail_when_the_dag_is_parsed(airflow_home: AirflowHome) -> None:
    done = subprocess.run(
        [PYTHON, "-c", CONFIG_PROBE],
        env=airflow_home.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert (
        errors["both"]
        == errors["neither"]
        == (
            "TitanConfigError: task t: give exactly one of script= (a file) or command= (a program and its args)"
        )
    )
    assert errors["env"].startswith("TitanConfigError: task t: env must be a dict")
    assert errors["timeout"].startswith(
        "TitanConfigError: task t: timeout must be a positive number of seconds"
    )
    assert errors["priority"].startswith("TitanConfigError: task t: priority must be an integer")
    assert errors["poll"] == "TitanConfigError: task p: poll_interval must be more than 0 seconds"
    assert errors["fine"] is None


TLS_PROBE = """
import json
from titan_airflow import TitanHook
with TitanHook("titan_tls").get_conn() as client:
    print(json.dumps([w.name for w in client.list_workers()]))
"""


def test_a_connection_whose_extra_names_the_ca_dials_a_tls_master(
    airflow_home: AirflowHome, make_cluster, tmp_path: Path
) -> None:
    ca = tmp_path / "tls"
    certs.init(ca)
    cluster: ProcessCluster = make_cluster(master_args=("--tls-dir", str(ca)))
    cluster.tls = ClientTls(str(ca / "ca.pem"))
    cluster.add_worker("w1")
    tls = conn(
        host="127.0.0.1", port=cluster.port, password=cluster.token, extra={"tls_ca": str(ca / "ca.pem")}
    )
    env = airflow_home.env(AIRFLOW_CONN_TITAN_TLS=tls)
    assert "TITAN_TLS_CA" not in env  # the CA comes from the connection alone
    done = subprocess.run(
        [PYTHON, "-c", TLS_PROBE], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["w1"]
