"""The interface between the master's autoscaler loop and the providers."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from titan_runtime.tls import ClientTls


class ProviderError(Exception):
    """A launch or a stop failed; the message says what went wrong and what to do."""


def quantity_args(cpus: int | None, memory_mb: int | None, gpus: tuple[str, ...] | None) -> list[str]:
    """`titan-runtime worker` flags for what a pool declares its workers offer: the worker then
    advertises exactly that (the autoscaler planned on it), whatever it would detect. None: not
    declared, no flag (the worker reports what it detects)."""
    args = []
    if cpus is not None:
        args += ["--cpus", str(cpus)]
    if memory_mb is not None:
        args += ["--memory", f"{memory_mb}M"]
    if gpus is not None:
        args += ["--gpus", ",".join(gpus) or "none"]
    return args


@dataclass(frozen=True)
class LaunchRequest:
    """Start one worker of `pool` that registers as launch `launch_id`."""

    launch_id: str
    pool: str
    provider: str
    tags: tuple[str, ...]
    slots: int
    master: str  # HOST:PORT the worker dials (the provider may know better: a tunnel, a public address)
    token: str  # what the worker presents: the cluster token, or a one-time join token (webhook)
    token_expires_at: float = 0.0  # a join token not used by then is refused
    tls: ClientTls | None = None  # how a worker on the master's host dials it (local pools)
    # What the worker offers, as its pool declares it (None: the worker reports what it detects).
    cpus: int | None = None
    memory_mb: int | None = None
    gpus: tuple[str, ...] | None = None  # device ids; () is none

    def worker_args(self, master: str | None = None) -> list[str]:
        """`titan-runtime worker` arguments (without the program) for this launch; no secret in them."""
        args = [
            "worker",
            "--master",
            master or self.master,
            "--name",
            self.launch_id,
            "--pool",
            self.pool,
            "--provider",
            self.provider,
            "--launch-id",
            self.launch_id,
            "--slots",
            str(self.slots),
        ]
        if self.tags:
            args += ["--tags", ",".join(self.tags)]
        return args + quantity_args(self.cpus, self.memory_mb, self.gpus)


class Provider(abc.ABC):
    """Starts and stops the workers of one pool.

    A provider is found by the name a pool gives in cluster.yaml (`provider: NAME`) in the registry
    (registry.py): the built-in ones, and any a package declares in the `titan_runtime.providers`
    entry-point group. What its pools may set, and how they are checked, is the class's to say."""

    #: The settings its pools take in cluster.yaml beyond the common ones: key -> type (str, bool,
    #: float, int, list). Anything else is refused, naming what is known.
    settings_keys: ClassVar[dict[str, type]] = {}
    #: How long one of its launches may take to register when the pool sets no register_timeout.
    register_timeout: ClassVar[float] = 60.0

    @classmethod
    def check(cls, settings: dict[str, Any], values: dict[str, Any], where: str) -> list[str]:
        """What is wrong with a pool's settings beyond their types, each error starting with `where`.
        `values` are the pool's common keys (min, max, ...): a provider may give them defaults."""
        return []

    @classmethod
    @abc.abstractmethod
    def from_pool(cls, name: str, settings: dict[str, Any], data_dir: Path) -> Provider:
        """The provider of pool `name`, from its checked settings; `data_dir` is the master's."""

    @abc.abstractmethod
    async def launch(self, request: LaunchRequest) -> None:
        """Start the worker; return once it is started (not registered). Raise ProviderError."""

    @abc.abstractmethod
    async def retire(self, launch_id: str, reason: str, force: bool) -> None:
        """The launch is over. `force`: stop its worker if it still runs (it never registered, or
        was lost); otherwise it drained and left by itself and only cleaning up is left."""

    def exited(self) -> list[tuple[str, str]]:
        """(launch id, how) of the workers whose process this provider saw end since the last call."""
        return []

    async def close(self) -> None:  # noqa: B027 - providers without resources need nothing
        """The master stops: stop what this provider started, if it can."""
