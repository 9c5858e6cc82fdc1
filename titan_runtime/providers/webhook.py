"""Webhook provider: the autoscaler asks an external system (a cloud API, a Kubernetes operator,
a script) to start and stop workers, by signed JSON POSTs.

Every request is signed with HMAC-SHA256 under the pool's secret, over its timestamp, its delivery
id and its body (`X-Titan-Signature: sha256=<hex>`), so that a receiver can refuse a request
replayed later (outside its window) or again (a delivery id it has done). A scale-up carries a
one-time join token: the master accepts it from one new worker only (the first to register with it), so the external system never sees
the cluster token. Requests are retried with exponential backoff on network errors, 408, 429 and
5xx answers; other 4xx answers fail the launch at once with the answer's text. The contract the
external system must honour is in docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, ClassVar

from titan_runtime.client.backoff import Backoff
from titan_runtime.providers.base import LaunchRequest, Provider, ProviderError
from titan_runtime.version import __version__

log = logging.getLogger("titan.providers.webhook")

SIGNATURE_HEADER = "X-Titan-Signature"
EVENT_HEADER = "X-Titan-Event"
DELIVERY_HEADER = "X-Titan-Delivery"
TIMESTAMP_HEADER = "X-Titan-Timestamp"
#: How far a request's timestamp may be from the receiver's clock (seconds): the replay window.
REPLAY_WINDOW = 300
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 8.0
MAX_ANSWER_BYTES = 64 * 1024


def sign(secret: bytes, timestamp: str, delivery: str, body: bytes) -> str:
    """The value of X-Titan-Signature: over "TIMESTAMP.DELIVERY." and the raw body."""
    message = f"{timestamp}.{delivery}.".encode() + body
    return "sha256=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    body: bytes,
    signature: str,
    timestamp: str,
    delivery: str,
    now: float | None = None,
    window: float = REPLAY_WINDOW,
) -> bool:
    """What a receiver does with a request's headers and raw body: the signature matches (compared
    in constant time) and the timestamp is within `window` seconds of now. A receiver also drops a
    delivery id it has already done (see example_pipelines/webhook_receiver)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > window:
        return False
    return hmac.compare_digest(sign(secret, timestamp, delivery, body), signature or "")


class Deliveries:
    """The delivery ids a receiver has done, for as long as a replay of them could pass `verify`:
    a request whose id is here was done already (a retry after a lost answer, or a replay)."""

    def __init__(self, window: float = REPLAY_WINDOW) -> None:
        self.window = window
        self._done: dict[str, float] = {}

    def first_time(self, delivery: str, now: float | None = None) -> bool:
        """True (and remember it) the first time `delivery` is seen within twice the window."""
        now = time.time() if now is None else now
        for old in [d for d, at in self._done.items() if now - at > 2 * self.window]:
            del self._done[old]
        if delivery in self._done:
            return False
        self._done[delivery] = now
        return True


def read_secret(settings: dict[str, Any], pool: str) -> bytes:
    if settings.get("secret_file"):
        path = Path(settings["secret_file"])
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise ProviderError(
                f"pool {pool}: cannot read its webhook secret {path}: {exc.strerror or exc}"
            ) from None
    else:
        name = settings.get("secret_env", "")
        secret = os.environ.get(name, "").strip()
        if not secret:
            raise ProviderError(f"pool {pool}: the environment variable {name} (its webhook secret) is empty")
    if len(secret) < 16:
        raise ProviderError(
            f"pool {pool}: its webhook secret is shorter than 16 characters; use a long random one"
        )
    return secret.encode()


class WebhookError(ProviderError):
    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class WebhookProvider(Provider):
    settings_keys: ClassVar[dict[str, type]] = {
        "url": str,
        "allow_http": bool,
        "secret_file": str,
        "secret_env": str,
        "timeout": float,
        "retries": int,
        "master_address": str,
        "worker_args": list,
    }
    register_timeout: ClassVar[float] = 600.0  # a machine is made, booted and set up

    @classmethod
    def check(cls, settings: dict[str, Any], values: dict[str, Any], where: str) -> list[str]:
        """An https URL (http only when allowed: it carries each launch's join token) and a key
        its requests are signed with."""
        errors = []
        url = settings.get("url", "")
        if not url.startswith(("http://", "https://")):
            errors.append(f"{where}.url: required for provider webhook: an https:// URL")
        elif url.startswith("http://") and not settings.get("allow_http"):
            errors.append(
                f"{where}.url: {url} is plain http, which carries each launch's join token in clear; "
                "use https://, or set allow_http: true where the network is trusted"
            )
        if not settings.get("secret_file") and not settings.get("secret_env"):
            errors.append(
                f"{where}: a webhook pool needs secret_file or secret_env (the HMAC key its requests are signed with)"
            )
        return errors

    @classmethod
    def from_pool(cls, name: str, settings: dict[str, Any], data_dir: Path) -> WebhookProvider:
        return cls(settings, name)

    def __init__(self, settings: dict[str, Any], pool: str) -> None:
        self.pool = pool
        self.url: str = settings["url"]
        self.secret = read_secret(settings, pool)
        self.timeout = float(settings.get("timeout", 10.0))
        self.retries = int(settings.get("retries", 5))
        self.master_address = settings.get("master_address", "")
        self.extra_args = list(settings.get("worker_args", []))
        self.instances: dict[str, Any] = {}  # launch id -> what the external system answered

    # ------------------------------------------------------------------ requests

    def _post_once(self, body: bytes, event: str, delivery: str) -> dict[str, Any]:
        timestamp = str(int(time.time()))  # each attempt's own: a retry is not a replay
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"titan-runtime/{__version__}",
                SIGNATURE_HEADER: sign(self.secret, timestamp, delivery, body),
                EVENT_HEADER: event,
                DELIVERY_HEADER: delivery,
                TIMESTAMP_HEADER: timestamp,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            text = exc.read(MAX_ANSWER_BYTES).decode("utf-8", "replace").strip()
            retry = exc.code in (408, 429) or exc.code >= 500
            raise WebhookError(
                f"{self.url} answered HTTP {exc.code}: {text[:500] or exc.reason}", retry
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WebhookError(f"cannot reach {self.url}: {reason}", True) from None
        if not text.strip():
            return {}
        try:
            answer = json.loads(text)
        except ValueError:
            raise WebhookError(
                f"{self.url} answered with something that is not JSON: {text[:200]!r}", False
            ) from None
        if not isinstance(answer, dict):
            raise WebhookError(f"{self.url} answered {text[:200]!r}; expected a JSON object", False)
        return answer

    async def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload` signed; retry with backoff; return the answer's JSON object ({} if empty)."""
        event = payload["event"]
        delivery = uuid.uuid4().hex  # the same for every retry: receivers can drop duplicates
        body = json.dumps(payload, sort_keys=True).encode()
        backoff = Backoff(BACKOFF_INITIAL, BACKOFF_MAX, attempts=self.retries)
        while True:
            try:
                return await asyncio.to_thread(self._post_once, body, event, delivery)
            except WebhookError as exc:
                wait = backoff.next_delay() if exc.retry else None
                if wait is None:
                    tries = backoff.failures + 1
                    suffix = f" (after {tries} attempts)" if tries > 1 else ""
                    raise ProviderError(
                        f"webhook {event} for pool {self.pool} failed{suffix}: {exc}"
                    ) from None
                log.warning("webhook %s for pool %s: %s; retrying in %.1fs", event, self.pool, exc, wait)
                await asyncio.sleep(wait)

    # ------------------------------------------------------------------ the provider

    async def launch(self, request: LaunchRequest) -> None:
        master = self.master_address or request.master
        args = [*request.worker_args(master), *self.extra_args]
        answer = await self.post(
            {
                "event": "scale_up",
                "pool": request.pool,
                "launch_id": request.launch_id,
                "tags": list(request.tags),
                "slots": request.slots,
                "cpus": request.cpus,
                "memory_mb": request.memory_mb,
                "gpus": list(request.gpus) if request.gpus is not None else None,
                "master": master,
                "join_token": request.token,
                "join_token_expires_at": request.token_expires_at,
                "worker_args": args,
                "command": "TITAN_TOKEN=<join_token> titan-runtime " + " ".join(args),
                "sent_at": time.time(),
                **self._tls(request),
            }
        )
        self.instances[request.launch_id] = answer.get("instance", "")

    @staticmethod
    def _tls(request: LaunchRequest) -> dict[str, str]:
        """The master serves TLS: its CA goes along, and when it requires client certificates, one
        made for this launch alone (the request travels over https: see clusterconfig)."""
        if request.tls is None:
            return {}
        from titan_runtime.certs import CertError, issue_pem  # cryptography: only for this

        try:
            out = {"tls_ca_pem": Path(request.tls.ca).read_text()}
            if request.tls.cert:
                cert, key = issue_pem(Path(request.tls.ca).parent, "worker", request.launch_id)
                out.update(tls_cert_pem=cert.decode(), tls_key_pem=key.decode())
        except (OSError, CertError) as exc:
            raise ProviderError(
                f"cannot give launch {request.launch_id} the cluster's TLS files: {exc}"
            ) from None
        return out

    async def retire(self, launch_id: str, reason: str, force: bool) -> None:
        await self.post(
            {
                "event": "scale_down",
                "pool": self.pool,
                "launch_id": launch_id,
                "instance": self.instances.pop(launch_id, ""),
                "reason": reason,
                "force": force,
                "sent_at": time.time(),
            }
        )
