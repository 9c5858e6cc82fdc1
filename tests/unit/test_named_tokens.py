"""Named tokens (`titan-runtime token`): made once, kept as hashes, expiring, revoked alone; and
what each role's caller may change."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan_runtime.core.effects import WorkerHello
from titan_runtime.master.auth import Caller, Credentials
from titan_runtime.master.link import certificate_refusal, worker_token_refusal
from titan_runtime.master.policy import POLICY, Access, Kind, refusal
from titan_runtime.master.tokens import NamedTokens, TokenError
from titan_runtime.store import open_store


def test_a_token_is_kept_as_its_hash_and_survives_a_restart(tmp_path: Path) -> None:
    store = open_store("sqlite", tmp_path, fsync=False)
    tokens = NamedTokens(store)
    token, record = tokens.create("ci", "submit", now=1.0)
    assert (record.name, record.role, record.expires_at) == ("ci", "submit", 0.0)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("titan.db"))
    assert token.encode() not in raw and token.split(".", 1)[1].encode() not in raw
    again = NamedTokens(open_store("sqlite", tmp_path, fsync=False))
    found = again.lookup(token)
    assert found is not None and found.name == "ci"
    assert again.lookup(token + "x") is None and again.lookup("ci") is None


def test_names_roles_and_expiry_are_checked_and_revoking_is_by_name() -> None:
    tokens = NamedTokens()
    with pytest.raises(TokenError, match="unknown role 'root'"):
        tokens.create("x", "root", now=1.0)
    with pytest.raises(TokenError, match="invalid token name"):
        tokens.create("-x", "read", now=1.0)
    with pytest.raises(TokenError, match="bind a worker token"):
        tokens.create("x", "read", now=1.0, tags=["gpu"])
    with pytest.raises(TokenError, match="in the past"):
        tokens.create("x", "read", now=10.0, expires_at=5.0)
    token, _ = tokens.create("x", "read", now=1.0, expires_at=100.0)
    with pytest.raises(TokenError, match="exists"):
        tokens.create("x", "admin", now=1.0)
    credentials = Credentials("cluster-secret", Path("token"), named=tokens, clock=lambda: 50.0)
    assert credentials.identify(token) == Caller(Kind.READ, name="x")
    late = Credentials("cluster-secret", Path("token"), named=tokens, clock=lambda: 101.0)
    assert late.identify(token) == Caller(Kind.READ, name="x", expired=True)
    assert tokens.revoke("x").name == "x"
    assert credentials.identify(token) is None
    with pytest.raises(TokenError, match="no token named 'x'"):
        tokens.revoke("x")


def test_a_worker_token_admits_workers_named_after_it_with_the_tags_it_grants() -> None:
    tokens = NamedTokens()
    _, record = tokens.create("gpu1", "worker", now=1.0, pool="gpus", tags=["gpu", "linux"])

    def hello(worker_id: str, *tags: str) -> WorkerHello:
        return WorkerHello(worker_id=worker_id, name=worker_id, tags=frozenset(tags))

    assert worker_token_refusal(record, hello("gpu1-0a1b2c", "gpu")) == ""
    assert worker_token_refusal(record, hello("gpu1")) == ""
    assert "admits only workers named gpu1" in worker_token_refusal(record, hello("cpu1-0a1b2c"))
    assert "admits only workers named gpu1" in worker_token_refusal(record, hello("gpu1-2-0a1b2c"))
    assert "does not grant the tags secure" in worker_token_refusal(record, hello("gpu1", "gpu", "secure"))


def test_each_role_changes_what_it_may() -> None:
    admin, submit = Caller(Kind.ADMIN, name="a"), Caller(Kind.SUBMIT, name="ci")
    job, read = Caller(Kind.JOB, run_id="r1"), Caller(Kind.READ, name="dash")
    assert admin.may_change("r9", "run:r1") and admin.submitter == ""
    assert submit.may_change("r2", "token:ci") and not submit.may_change("r3", "token:other")
    assert not submit.may_change("r4", "")  # the cluster's runs are not a submit token's
    assert job.may_change("r1", "") and not job.may_change("r2", "run:r1")
    assert not read.may_change("r1", "token:dash")
    assert (submit.submitter, submit.kv_owner, job.kv_owner) == ("token:ci", "token:ci", "r1")
    assert submit.describe() == "the submit token ci"


def test_the_roles_columns_follow_from_the_table() -> None:
    def names(kind: Kind, access: Access) -> set[str]:
        return {m.rsplit("/", 1)[-1] for m, p in POLICY.items() if p.access(kind) is access}

    reads = {m.rsplit("/", 1)[-1] for m, p in POLICY.items() if not p.mutates}
    assert names(Kind.ADMIN, Access.ALLOW) == {m.rsplit("/", 1)[-1] for m in POLICY}
    assert names(Kind.READ, Access.ALLOW) == reads and names(Kind.READ, Access.READS) == {"Kv"}
    assert names(Kind.WORKER, Access.ALLOW) == {"Connect", "GetArtifact"}
    assert names(Kind.SUBMIT, Access.DENY) == {
        "Connect", "DrainWorker", "SaveDag", "DeleteSavedDag", "AddSchedule", "DeleteSchedule",
        "CreateToken", "RevokeToken", "SetSecret", "DeleteSecret", "DeleteRun", "CollectGarbage",
    }  # fmt: skip
    assert names(Kind.SUBMIT, Access.OWN_RUN) == names(Kind.JOB, Access.OWN_RUN)
    assert "ListAudit" in reads and "ListTokens" in reads
    assert refusal("/titan.v1.Titan/SubmitRun", Kind.READ).startswith("a read token cannot call SubmitRun")
    assert "an admin token" in refusal("/titan.v1.Titan/SaveDag", Kind.SUBMIT)


def test_a_worker_certificate_binds_the_name_a_client_certificate_connects_no_worker() -> None:
    assert certificate_refusal("", "", "anyone-0a1b2c") == ""  # no certificate: the token decides
    assert certificate_refusal("worker", "local", "w7-0a1b2c") == ""  # the master's own pools
    assert certificate_refusal("worker", "gpu1", "gpu1-0a1b2c") == ""
    assert "admits only workers named gpu1" in certificate_refusal("worker", "gpu1", "gpu2-0a1b2c")
    assert "a client certificate (me) cannot connect a worker" in certificate_refusal("client", "me", "me")
