"""Named tokens: lasting credentials with a role, made by `titan-runtime token create`.

Handing the cluster token to every CI job, dashboard and worker host gives each of them every
right, and rotating it means touching all of them at once. A named token carries one role (admin,
submit, read, worker; policy.py says what each may call), may expire, and is revoked alone. A worker
token also binds what a worker may register as: ids under its name, its pool, and the tags granted.

Only a SHA-256 of each token is kept, in memory and in the store's KV namespace `titan/tokens/`,
so a master restart keeps them and a copy of the store gives no token away. The token itself is
shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from titan_runtime.master.kvrecords import KvRecords
from titan_runtime.master.policy import ROLES, Kind

PREFIX = "ttok1."
KV_PREFIX = "titan/tokens/"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
MAX_TOKENS = 1000
_WORKER_SUFFIX = re.compile(r"-[0-9a-f]{6}\Z")  # what a worker adds to its name to make its id


class TokenError(ValueError):
    """A token that cannot be made or revoked as asked; the message says what to do."""


def named_after(name: str, worker_id: str) -> bool:
    """Whether `worker_id` is what a worker started with `--name NAME` calls itself: `NAME` or
    `NAME-xxxxxx`. A worker credential bound to a name admits those ids alone."""
    if worker_id == name:
        return True
    return worker_id.startswith(name) and bool(_WORKER_SUFFIX.fullmatch(worker_id[len(name) :]))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class NamedToken:
    name: str
    role: str  # a Kind value among ROLES
    created_at: float
    expires_at: float = 0.0  # 0: never
    pool: str = ""  # worker tokens: the pool its workers belong to
    tags: list[str] = field(default_factory=list)  # worker tokens: the only tags its workers may claim

    @property
    def kind(self) -> Kind:
        return Kind(self.role)

    def expired(self, now: float) -> bool:
        return bool(self.expires_at) and now > self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NamedTokens:
    """The named tokens, by digest; `store` None keeps them in memory only (tests)."""

    def __init__(self, store: Any | None = None) -> None:
        self._kept = KvRecords(store, KV_PREFIX, NamedToken)
        self._tokens = self._kept.records

    def create(
        self,
        name: str,
        role: str,
        now: float,
        expires_at: float = 0.0,
        pool: str = "",
        tags: list[str] | None = None,
    ) -> tuple[str, NamedToken]:
        """Make a token: (the token, shown this once; its record)."""
        if role not in {k.value for k in ROLES}:
            raise TokenError(f"unknown role {role!r}: choose one of {', '.join(k.value for k in ROLES)}")
        if not NAME_PATTERN.match(name):
            raise TokenError(
                f"invalid token name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit"
            )
        if any(t.name == name for t in self._tokens.values()):
            raise TokenError(f"a token named {name!r} exists; revoke it first or choose another name")
        if len(self._tokens) >= MAX_TOKENS:
            raise TokenError(f"there are {MAX_TOKENS} tokens already; revoke some first")
        if expires_at and expires_at <= now:
            raise TokenError("the expiry is in the past: give a duration such as 30d")
        if role != Kind.WORKER.value and (pool or tags):
            raise TokenError("--pool and --tags bind a worker token; this one is not a worker token")
        token = PREFIX + secrets.token_urlsafe(32)
        record = NamedToken(name, role, now, expires_at, pool, sorted(set(tags or ())))
        self._kept.put(_digest(token), record)
        return token, record

    def lookup(self, token: str) -> NamedToken | None:
        """The record of a presented token (expired ones too: the caller says why it is refused)."""
        if not token.startswith(PREFIX):
            return None
        return self._tokens.get(_digest(token))

    def list(self) -> list[NamedToken]:
        return sorted(self._tokens.values(), key=lambda t: t.name)

    def revoke(self, name: str) -> NamedToken:
        for digest, record in list(self._tokens.items()):
            if record.name == name:
                self._kept.delete(digest)
                return record
        raise TokenError(f"no token named {name!r}; `titan-runtime token list` shows them")
