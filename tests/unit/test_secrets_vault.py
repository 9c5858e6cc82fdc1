"""The secrets vault on its own: sealed at rest, bound to its name, under a private key."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from titan_runtime.master.secrets import (
    KEY_FILE,
    KV_PREFIX,
    MAX_VALUE_BYTES,
    MissingSecret,
    SecretError,
    Secrets,
)
from titan_runtime.store import open_store
from titan_runtime.store.memory import MemoryStore

VALUE = "s3cr3t-Value-of-a-test"


def test_a_value_is_sealed_in_the_store_and_opens_only_under_its_own_name(tmp_path: Path) -> None:
    store = MemoryStore()
    vault = Secrets(store, tmp_path)
    vault.set("db-password", VALUE.encode(), now=100.0)
    vault.set("other", b"another value")
    record = store.kv_get(KV_PREFIX + "db-password")
    assert record is not None and VALUE not in record
    assert vault.open("db-password") == VALUE
    assert vault.listing()[0] == ("db-password", 100.0)
    # A sealed record moved to another name (the name is the associated data) does not open.
    store.kv_put(KV_PREFIX + "other", record)
    with pytest.raises(SecretError, match="cannot be opened"):
        vault.open("other")
    # Nor does one tampered with.
    data = json.loads(record)
    data["sealed"] = data["sealed"][:-4] + ("AAAA" if not data["sealed"].endswith("AAAA") else "BBBB")
    store.kv_put(KV_PREFIX + "db-password", json.dumps(data))
    with pytest.raises(SecretError, match="cannot be opened"):
        vault.open("db-password")


def test_the_key_file_is_made_private_on_first_use_and_refused_when_others_can_read_it(
    tmp_path: Path,
) -> None:
    vault = Secrets(MemoryStore(), tmp_path)
    key = tmp_path / KEY_FILE
    assert not key.exists()  # a master without secrets makes no key
    old = os.umask(0)
    try:
        vault.set("a-name", b"value")
    finally:
        os.umask(old)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    key.chmod(0o644)
    with pytest.raises(SecretError, match=r"readable by other users \(mode 644\).*chmod 600"):
        Secrets(MemoryStore(), tmp_path)


def test_secrets_survive_a_reopened_store_and_a_deleted_one_is_missing(tmp_path: Path) -> None:
    store = open_store("sqlite", tmp_path, fsync=False)
    Secrets(store, tmp_path).set("token", VALUE.encode())
    store.close()
    store = open_store("sqlite", tmp_path, fsync=False)
    try:
        vault = Secrets(store, tmp_path)
        assert vault.resolve({"API_TOKEN": "token"}) == {"API_TOKEN": VALUE}
        assert vault.delete("token") and not vault.delete("token")
        with pytest.raises(
            MissingSecret, match="secret token is not set; set it with `titan-runtime secret set token`"
        ):
            vault.resolve({"API_TOKEN": "token"})
        assert vault.listing() == []
    finally:
        store.close()
    for name in ("titan.db", "titan.db-wal"):
        path = tmp_path / name
        if path.exists():
            assert VALUE.encode() not in path.read_bytes()


@pytest.mark.parametrize(
    ("name", "value", "refusal"),
    [
        ("-bad", b"v", "invalid secret name"),
        ("a/b", b"v", "invalid secret name"),
        ("x" * 129, b"v", "invalid secret name"),
        ("ok", b"", "the value is empty"),
        ("ok", b"x" * (MAX_VALUE_BYTES + 1), "over the limit of 65,536"),
        ("ok", b"\xff\xfe", "not UTF-8 text"),
        ("ok", b"a\0b", "NUL byte"),
    ],
)
def test_what_a_secret_cannot_be(tmp_path: Path, name: str, value: bytes, refusal: str) -> None:
    with pytest.raises(SecretError, match=refusal):
        Secrets(MemoryStore(), tmp_path).set(name, value)
