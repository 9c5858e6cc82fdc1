"""One-time join tokens: minted per launch, bound to the first worker, revoked with the launch, kept
across a master restart (only their hashes are stored)."""

from __future__ import annotations

from pathlib import Path

from titan_runtime.master.auth import Caller, Credentials
from titan_runtime.master.jointokens import JoinTokens
from titan_runtime.master.policy import Kind
from titan_runtime.store import open_store

NO_TAGS: frozenset[str] = frozenset()


def test_a_join_token_admits_one_worker_once_and_survives_a_restart(tmp_path: Path) -> None:
    store = open_store("sqlite", tmp_path, fsync=False)
    tokens = JoinTokens(store)
    token = tokens.mint("cloud-1", "cloud", "webhook", expires_at=100.0)
    assert token.startswith("tjoin1.")
    assert tokens.lookup(token, 50.0).launch_id == "cloud-1"
    assert tokens.lookup("tjoin1.forged", 50.0) is None
    record, why = tokens.bind(token, "worker-a", NO_TAGS, False, 50.0)
    assert record is not None and why == ""
    assert (
        tokens.bind(token, "worker-a", NO_TAGS, False, 500.0)[0] is not None
    )  # its own reconnects, even after expiry
    refused, why = tokens.bind(token, "worker-b", NO_TAGS, False, 60.0)
    assert refused is None and "already used by worker worker-a" in why
    # Only the hash is stored; a restarted master knows the token and its binding.
    raw = [store.kv_get("titan/join/" + d) for d in store.kv_smembers("titan/join/")]
    assert raw and all(token not in text for text in raw)
    store.close()
    store = open_store("sqlite", tmp_path, fsync=False)
    again = JoinTokens(store)
    assert again.bind(token, "worker-a", NO_TAGS, False, 1000.0)[0] is not None
    assert again.bind(token, "worker-b", NO_TAGS, False, 1000.0)[0] is None
    again.revoke("cloud-1")
    assert again.lookup(token, 0.0) is None
    assert JoinTokens(store).lookup(token, 0.0) is None
    store.close()


def test_an_unused_join_token_expires() -> None:
    tokens = JoinTokens()
    token = tokens.mint("cloud-2", "cloud", "webhook", expires_at=10.0)
    assert tokens.lookup(token, 9.0) is not None
    assert tokens.lookup(token, 11.0) is None
    assert tokens.bind(token, "late-worker", NO_TAGS, False, 11.0)[0] is None


def test_credentials_tell_a_join_caller_from_the_cluster(tmp_path: Path) -> None:
    tokens = JoinTokens()
    credentials = Credentials("cluster-secret", tmp_path / "token", tokens)
    token = tokens.mint("cloud-3", "cloud", "webhook", expires_at=1e12)
    caller = credentials.identify(token)
    assert caller == Caller(Kind.JOIN, join="cloud-3") and not caller.is_admin
    assert credentials.identify("cluster-secret").is_admin


def test_a_join_token_admits_only_its_pools_tags_and_a_new_worker_id() -> None:
    tokens = JoinTokens()
    token = tokens.mint("cloud-4", "cloud", "webhook", expires_at=100.0, tags=frozenset({"linux", "x86"}))
    refused, why = tokens.bind(token, "w", frozenset({"linux", "gpu"}), False, 1.0)
    assert refused is None and why.startswith(
        "pool cloud does not grant the tags gpu (it grants: linux, x86)"
    )
    refused, why = tokens.bind(token, "someone-elses-id", frozenset({"linux"}), True, 1.0)
    assert refused is None and "already registered" in why
    assert tokens.bind(token, "w", frozenset({"linux"}), False, 1.0)[0] is not None
    assert tokens.bind(token, "w", frozenset({"linux"}), True, 2.0)[0] is not None  # its own reconnect


def test_a_job_credential_lasts_as_long_as_its_run_and_its_grace(tmp_path: Path) -> None:
    ended = {"running": 0.0, "done": 100.0}
    now = [130.0]
    credentials = Credentials("cluster-secret", tmp_path / "token", None, ended.get, 60.0, lambda: now[0])
    assert credentials.identify(credentials.job_credential("running")) == Caller(Kind.JOB, run_id="running")
    assert credentials.identify(credentials.job_credential("done")) == Caller(Kind.JOB, run_id="done")
    now[0] = 160.5
    assert credentials.identify(credentials.job_credential("done")) == Caller(
        Kind.JOB, run_id="done", expired=True
    )
    assert credentials.identify(credentials.job_credential("running")) == Caller(Kind.JOB, run_id="running")
    assert credentials.identify(credentials.job_credential("unknown")).expired
