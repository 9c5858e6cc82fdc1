"""Named tokens with roles (`titan-runtime token`), against a real master and real workers.

The authorization matrix (test_policy.py) checks every RPC for every role; here are what users
do with them: hand a read token to a monitor, a submit token to CI, a worker token to a host, and
expire, revoke and audit them.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_runtime import PermissionDenied, TitanClient, TitanJob, Unauthenticated

pytestmark = pytest.mark.integration


def create(cluster: ProcessCluster, *args: str) -> str:
    out = cluster.cli("token", "create", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_read_token_reads_and_changes_nothing_and_is_revoked_alone(cluster: ProcessCluster) -> None:
    token = create(cluster, "--role", "read", "--name", "monitor")
    assert token.startswith("ttok1.") and "\n" not in token
    listed = json.loads(cluster.cli("token", "list", "--json").stdout)
    assert [(t["name"], t["role"], t["expires_at"]) for t in listed] == [("monitor", "read", 0.0)]
    assert token not in json.dumps(listed)

    run = cluster.client.submit_job(TitanJob(command=["true"]))
    env = dict(cluster.env(), TITAN_TOKEN=token)
    status = cluster.cli("status", run, "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["ref"] == f"{run}/true"
    refused = cluster.cli("submit", "--", "true", env=env)
    assert refused.returncode != 0
    assert "a read token cannot call SubmitRun: it changes something" in refused.stderr
    with TitanClient(cluster.address, token=token) as reader:
        assert reader.store_get("anything") is None
        with pytest.raises(PermissionDenied, match="a read token changes nothing"):
            reader.store_put("k", "v")

    assert cluster.cli("token", "revoke", "monitor").returncode == 0
    gone = cluster.cli("runs", env=env)
    assert gone.returncode != 0 and "wrong token" in gone.stderr
    assert cluster.cli("runs").returncode == 0  # the cluster token is untouched


def test_a_submit_token_changes_only_the_runs_and_keys_it_made(cluster: ProcessCluster) -> None:
    token = create(cluster, "--role", "submit", "--name", "ci")
    admin = cluster.client
    theirs = admin.submit_dag("theirs", [TitanJob("a", command=["true"], tags=["nowhere"])], run_id="nightly")
    admin.store_put("shared", "cluster's")
    with TitanClient(cluster.address, token=token) as ci:
        mine = ci.submit_dag("mine", [TitanJob("a", command=["true"], tags=["nowhere"])])
        ci.cancel(mine.id)
        assert admin.get_run(mine.id).state == "CANCELLED"
        with pytest.raises(PermissionDenied, match="the submit token ci cannot change run nightly"):
            ci.cancel(theirs.id)
        with pytest.raises(PermissionDenied, match="submitted by an admin"):
            ci.submit_dag("theirs", [TitanJob("a", command=["true"], tags=["nowhere"])], run_id="nightly")
        with pytest.raises(PermissionDenied, match="belongs to the cluster"):
            ci.store_put("shared", "mine now")
        ci.store_put("ci-key", "v")
        admin.set_secret("deploy-key", "a-deploy-secret")  # a submit token's jobs may name secrets
        deploy = ci.submit_job(TitanJob(command=["true"], tags=["nowhere"], secrets={"KEY": "deploy-key"}))
        assert admin.get_job(deploy).state == "READY"
        with pytest.raises(PermissionDenied, match="cannot call SaveDag"):
            ci.save_dag("d", [TitanJob("a", command=["true"])])
    other = create(cluster, "--role", "submit", "--name", "other-ci")
    with TitanClient(cluster.address, token=other) as stranger:
        with pytest.raises(PermissionDenied, match="belongs to the token ci"):
            stranger.store_put("ci-key", "x")
        with pytest.raises(PermissionDenied, match="the submit token other-ci cannot change run"):
            stranger.cancel(mine.id)
    assert admin.get_run(theirs.id).state != "CANCELLED"
    assert admin.store_get("shared") == "cluster's"
    entries = [e for e in admin.audit() if e.who == "the submit token ci"]
    assert {(e.rpc, e.outcome) for e in entries} >= {("SubmitRun", "OK"), ("Cancel", "PERMISSION_DENIED")}


def test_an_expired_token_is_refused_saying_so(cluster: ProcessCluster) -> None:
    token = create(cluster, "--role", "read", "--name", "short", "--expires", "1s")
    with TitanClient(cluster.address, token=token) as reader:

        def refused() -> str:
            try:
                reader.list_runs()
            except Unauthenticated as exc:
                return str(exc)
            return ""

        assert "the token short has expired" in wait_until(refused, 30, what="the token to expire")
    bad = cluster.cli("token", "create", "--role", "read", "--expires", "soon")
    assert bad.returncode == 2 and "give a duration such as 90m" in bad.stderr


def test_tokens_outlive_a_master_restart(cluster: ProcessCluster) -> None:
    token = create(cluster, "--role", "admin", "--name", "ops")
    cluster.restart_master()
    cluster._client = None
    with TitanClient(cluster.address, token=token) as ops:
        assert [t.name for t in ops.list_tokens()] == ["ops"]
        ops.revoke_token("ops")
    with pytest.raises(Unauthenticated), TitanClient(cluster.address, token=token) as ops:
        ops.list_runs()


def test_a_worker_token_admits_its_workers_with_its_tags_until_revoked(make_cluster) -> None:
    cluster = make_cluster()
    token = create(cluster, "--role", "worker", "--name", "gpu1", "--pool", "gpus", "--tags", "gpu,linux")

    wrong_name = cluster.add_worker("cpu9", tags=("gpu",), token=token, wait=False)
    assert wrong_name.wait(30) != 0
    assert "worker token gpu1 admits only workers named gpu1" in cluster.worker_log("cpu9")
    too_many_tags = cluster.add_worker("gpu1", tags=("gpu", "secure"), token=token, wait=False)
    assert too_many_tags.wait(30) != 0
    assert "does not grant the tags secure" in cluster.worker_log("gpu1")
    del cluster.workers["cpu9"], cluster.workers["gpu1"]

    worker = cluster.add_worker("gpu1", tags=("gpu",), token=token)
    (record,) = [w for w in cluster.client.list_workers() if w.state == "ALIVE"]
    assert record.pool == "gpus" and record.tags == ["gpu"]
    job = cluster.client.submit_job(TitanJob(command=["true"], tags=["gpu"]))
    assert cluster.client.wait(job, 60).state == "SUCCEEDED"

    assert cluster.cli("token", "revoke", "gpu1").returncode == 0
    assert worker.wait(30) != 0  # disconnected, then refused: it stops
    assert "wrong token" in cluster.worker_log("gpu1")
    del cluster.workers["gpu1"]
