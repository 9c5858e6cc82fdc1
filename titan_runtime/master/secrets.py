"""The secrets vault: named values a job gets in its environment, encrypted at rest.

Each value is sealed with AES-256-GCM under a key of the master's own, `DATA_DIR/secrets.key`
(32 random bytes, made 0600 with O_EXCL when the first secret is set), a fresh 12-byte nonce per
write, and the secret's name as associated data: a sealed value moved to another name (by anyone
who can write the store) does not open. The sealed record lives in the store's KV namespace
`titan/secret/NAME` (the KV API refuses `titan/` to users) with the set of names at `titan/secret/`,
like join tokens: the store and its backups never hold a value in clear, and neither does anything
the master logs or answers. Values are opened only when an assignment is sent (`resolve`).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from titan_runtime.core.model import SECRET_NAME_PATTERN

KEY_FILE = "secrets.key"
KV_PREFIX = "titan/secret/"
KEY_BYTES = 32
NONCE_BYTES = 12
#: One value: an environment variable, not a file (ship large material as an artifact).
MAX_VALUE_BYTES = 64 * 1024
MAX_SECRETS = 1000


class SecretError(Exception):
    """A request about secrets that cannot be done; the message says what to do instead."""


class MissingSecret(SecretError):
    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name} is not set; set it with `titan-runtime secret set {name}`")
        self.name = name


def check_name(name: str) -> None:
    if not SECRET_NAME_PATTERN.match(name):
        raise SecretError(
            f"invalid secret name {name[:128]!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "not starting with '-' or '.'"
        )


def check_value(name: str, value: bytes) -> str:
    """The value as the text its environment variable will hold."""
    if len(value) > MAX_VALUE_BYTES:
        raise SecretError(
            f"secret {name}: its value is {len(value):,} bytes, over the limit of {MAX_VALUE_BYTES:,}; "
            "a secret goes into an environment variable: keep large material in a file or an artifact "
            "and put only its key or password in a secret"
        )
    if not value:
        raise SecretError(f"secret {name}: the value is empty; give the value on stdin or with --file")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(
            f"secret {name}: the value is not UTF-8 text; an environment variable holds text "
            "(base64-encode binary material)"
        ) from None
    if "\0" in text:
        raise SecretError(f"secret {name}: the value holds a NUL byte, which no environment variable can")
    return text


def _load_key(path: Path) -> bytes | None:
    """The key in `path`, None when there is none yet; refuses a key others may read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}): whoever reads it opens "
                f"every secret. Make it private (chmod 600 {path}) and set the secrets again if others "
                "may have read it"
            )
        key = fh.read()
    if len(key) != KEY_BYTES:
        raise SecretError(f"{path} is not a secrets key ({len(key)} bytes, expected {KEY_BYTES})")
    return key


def _create_key(path: Path) -> bytes:
    key = os.urandom(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    return key


class Secrets:
    """Set, list, delete and open secrets. Synchronous: the store's calls are (see MasterLoop.in_store)."""

    def __init__(self, store: Any, data_dir: Path) -> None:
        self._store = store
        self.key_path = data_dir / KEY_FILE
        self._key = _load_key(self.key_path)  # a key others can read stops the master at its start
        self._updated: dict[str, float] = {}
        for name in store.kv_smembers(KV_PREFIX):
            text = store.kv_get(KV_PREFIX + name)
            if text:
                self._updated[name] = float(json.loads(text).get("at", 0.0))

    def _aead(self, create: bool) -> AESGCM:
        if self._key is None:
            self._key = _load_key(self.key_path)
        if self._key is None:
            if not create:
                raise SecretError(
                    f"the secrets key {self.key_path} is missing: the stored secrets cannot be opened; "
                    "set them again"
                )
            self._key = _create_key(self.key_path)
        return AESGCM(self._key)

    def set(self, name: str, value: bytes, now: float | None = None) -> None:
        check_name(name)
        check_value(name, value)
        if name not in self._updated and len(self._updated) >= MAX_SECRETS:
            raise SecretError(
                f"there are {len(self._updated):,} secrets, the most a master keeps; "
                "delete ones no job uses (`titan-runtime secret rm NAME`)"
            )
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead(create=True).encrypt(nonce, value, name.encode())
        at = time.time() if now is None else now
        record = {
            "v": 1,
            "nonce": base64.b64encode(nonce).decode(),
            "sealed": base64.b64encode(sealed).decode(),
            "at": at,
        }
        self._store.kv_put(KV_PREFIX + name, json.dumps(record))
        self._store.kv_sadd(KV_PREFIX, name)
        self._updated[name] = at

    def delete(self, name: str) -> bool:
        if name not in self._updated:
            return False
        self._store.kv_delete(KV_PREFIX + name)
        self._store.kv_srem(KV_PREFIX, name)
        del self._updated[name]
        return True

    def listing(self) -> list[tuple[str, float]]:
        """(name, updated_at), by name: never a value."""
        return sorted(self._updated.items())

    def has(self, name: str) -> bool:
        return name in self._updated

    def open(self, name: str) -> str:
        """The value of `name` in clear; MissingSecret when it is not set."""
        text = self._store.kv_get(KV_PREFIX + name)
        if text is None:
            raise MissingSecret(name)
        record = json.loads(text)
        try:
            value = self._aead(create=False).decrypt(
                base64.b64decode(record["nonce"]), base64.b64decode(record["sealed"]), name.encode()
            )
        except (InvalidTag, KeyError, ValueError):
            raise SecretError(
                f"secret {name} cannot be opened with {self.key_path} (a different key, or a record "
                "moved from another name); set it again"
            ) from None
        return value.decode("utf-8")

    def resolve(self, secrets: dict[str, str]) -> dict[str, str]:
        """A job's `secrets` (env var -> name) as env var -> value, for its assignment only."""
        return {env: self.open(name) for env, name in secrets.items()}
