"""What a job asks for: its spec, the policies in it, and the checks of both.

A spec is immutable once submitted; `validate` is the one place that says what a spec may hold
(names, numbers, services, dynamic-DAG fields, secrets), so the client, the master and a restored
store all refuse the same things. `to_dict`/`from_dict` are the spec's stored form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import Any

from titan_runtime.core.limits import DEFAULT_LIMITS, Limits
from titan_runtime.core.names import (  # noqa: F401 - the spec's names are this module's public names too
    GENERAL,
    ID_PATTERN,
    MAX_CALL_CHARS,
    MAX_PRELOAD,
    MAX_RESULT_BYTES,
    MAX_SECRETS_PER_JOB,
    MODULE_PATTERN,
    PORT_NAME_PATTERN,
    RUN_ID_PATTERN,
    SECRET_ENV_PATTERN,
    SECRET_NAME_PATTERN,
    TAG_PATTERN,
    TRIGGER_RULES,
)
from titan_runtime.core.resources import MAX_CPUS, MAX_GPUS, MAX_MEMORY_MB, NO_NEED, Need, millicpus


class InvalidSpec(ValueError):
    """A job or run definition that cannot be accepted; the message says what to change."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1
    backoff_initial: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 60.0
    max_lost: int = 3
    #: Tags of attempts 2, 3, ...: each later attempt runs on other hardware (the last entry repeats),
    #: never on a worker where the job already failed.
    fallback: tuple[frozenset[str], ...] = ()

    def tags_for(self, attempt: int, own: frozenset[str]) -> frozenset[str]:
        if attempt < 2 or not self.fallback:
            return own
        return self.fallback[min(attempt - 2, len(self.fallback) - 1)]

    def backoff(self, failures: int) -> float:
        """Seconds to wait before the next attempt after `failures` failed attempts."""
        if failures <= 0:
            return 0.0
        try:
            return min(
                self.backoff_max, self.backoff_initial * self.backoff_factor ** min(failures - 1, 1024)
            )
        except OverflowError:  # a factor so large that the step is past any maximum
            return self.backoff_max


@dataclass(frozen=True)
class HealthCheck:
    """How a worker decides a service is up: a TCP connect, or an HTTP GET answering `expect`."""

    tcp: bool = True
    http: str = ""  # a path such as "/healthz"; when set, an HTTP check replaces the TCP one
    expect: int = 200
    interval: float = 1.0
    timeout: float = 1.0
    grace: float = 0.0  # seconds after start before the first check
    failures: int = 3  # consecutive failed checks, once healthy, before the service is restarted


@dataclass(frozen=True)
class RestartPolicy:
    """Services restart after a crash with exponential backoff; more than `attempts` crashes within
    `window` seconds is a crash loop, which fails the service."""

    attempts: int = 5
    window: float = 600.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0

    def backoff(self, crashes: int, jitter: float) -> float:
        """`jitter` in [0, 1) spreads the wait between half and all of the exponential step."""
        step = min(self.backoff_max, self.backoff_initial * 2.0 ** min(max(crashes - 1, 0), 64))
        return step * (0.5 + 0.5 * jitter)


@dataclass(frozen=True)
class ApprovalGate:
    """A human decision after the job succeeds, before its dependents run (hitl_message)."""

    required: bool = False
    message: str = ""
    timeout: float = 172800.0  # max_wait_seconds: past it, the gate (and the job) fails


@dataclass(slots=True)
class JobSpec:
    """What the user asked for. Never changed once made: a new spec is made with
    `dataclasses.replace`. Slots: a big run holds 100,000 of them, and a __dict__ of 44 entries is
    2 KB each. Not a frozen dataclass: its __init__ sets each field through object.__setattr__,
    nine times the cost of a plain one (0.4 s of a 100,000-job submission, and of a restart)."""

    id: str
    kind: str = "batch"
    script_name: str = ""
    script_hash: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    priority: int = 1
    timeout: float = 0.0
    delay: float = 0.0
    parents: tuple[str, ...] = ()
    retries: RetryPolicy = RetryPolicy()
    affinity: str = ""
    node: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    slots: int = 1
    project_hash: str = ""
    workdir: str = ""
    # Resources beyond slots (core/resources.py): held on the worker while the job runs, placed
    # only where they fit. Memory is also the job's enforced limit; 0 means none asked.
    cpus: float = 0.0
    memory_mb: int = 0
    gpus: int = 0
    # Services (kind == "service"):
    port: int = 0  # a fixed port; 0: leased from the worker's range
    ports: tuple[str, ...] = ()  # named ports, each leased; empty: one unnamed port
    health: HealthCheck = HealthCheck()
    restart: RestartPolicy = RestartPolicy()
    replicas: int = 1
    service: str = ""  # the service id replicas share (set by the master when it expands replicas)
    # Dynamic DAGs:
    trigger_rule: str = "all_success"  # all_success | all_done | one_success | none_failed
    when: str = ""  # a condition on the parents' results (core.expr); false: the job is SKIPPED
    branch: bool = False  # the job's result names the children to follow; the others are SKIPPED
    map_over: str = ""  # a parent whose list result this job runs once per item of
    map_of: str = ""  # set on a mapped instance: the job it was mapped from
    map_index: int = -1
    iteration: int = 0  # a feedback loop's iteration (0: not in a loop; iterations 2, 3... are ID@N)
    approval: ApprovalGate = ApprovalGate()
    allow_failure: bool = False  # its failure does not fail the run (an agent handles it)
    #: Environment variable -> secret name. Only names: the master puts the values in the
    #: assignment it sends (never in the spec), so nothing that reads a spec back sees them.
    secrets: dict[str, str] = field(default_factory=dict)
    #: Seconds after it is READY at which the job fails if no connected worker can run it (0: it waits).
    unplaceable_after: float = 0.0
    #: Packages imported once by a launcher of its worker that forks it (a `{python}` job starts
    #: with them imported: a Dagster step without importing Dagster); empty: the plain launcher.
    preload: tuple[str, ...] = ()
    #: A function task (kind "function"): its function and arguments, pickled (cloudpickle) and
    #: base64-encoded. The worker runs it in a warm Python process (docs/python-tasks.md).
    call: str = ""

    @property
    def is_function(self) -> bool:
        return self.kind == "function"

    def validate(self, limits: Limits = DEFAULT_LIMITS) -> None:
        """Raise InvalidSpec naming the first problem with this job on its own."""
        if not ID_PATTERN.match(self.id):
            raise InvalidSpec(
                f"invalid job id {self.id!r}: use 1-128 letters, digits, '_', '-' or '.', not starting with '-' or '.'"
            )
        if self.kind not in ("batch", "service", "function"):
            raise InvalidSpec(
                f"job {self.id}: unknown kind {self.kind!r}; use 'batch', 'service' or 'function'"
            )
        has_script = bool(self.script_hash or (self.project_hash and self.script_name))
        if self.is_function or self.call:
            self._validate_function(has_script)
        elif has_script == bool(self.command):
            if has_script:
                raise InvalidSpec(f"job {self.id}: give either a script or a command, not both")
            raise InvalidSpec(f"job {self.id}: nothing to run; give a script file or a non-empty command")
        if self.project_hash and self.script_name:
            parts = self.script_name.split("/")
            if self.script_name.startswith("/") or ".." in parts or "" in parts:
                raise InvalidSpec(
                    f"job {self.id}: script {self.script_name!r} must be a relative path inside the project"
                )
        if self.command and not self.command[0]:
            raise InvalidSpec(f"job {self.id}: the command's program is an empty string")
        for tag in self.tags:
            if not TAG_PATTERN.match(tag):
                raise InvalidSpec(
                    f"job {self.id}: invalid tag {tag!r}: use 1-64 letters, digits, '_', '-', '.' or ':'"
                )
        self._validate_numbers()
        if self.timeout < 0 or self.delay < 0 or self.unplaceable_after < 0:
            raise InvalidSpec(
                f"job {self.id}: timeout, delay and fail_if_unplaceable must be zero or positive seconds"
            )
        for part in (*self.command, *self.args, *self.env.values()):
            if "\0" in part:
                raise InvalidSpec(f"job {self.id}: a command, argument or environment value holds a NUL byte")
        if self.slots < 1:
            raise InvalidSpec(f"job {self.id}: slots must be at least 1")
        if not 0 <= self.cpus <= MAX_CPUS or (self.cpus and millicpus(self.cpus) == 0):  # NaN too
            raise InvalidSpec(f"job {self.id}: resources.cpus must be between 0.001 and {MAX_CPUS:,}")
        if not 0 <= self.memory_mb <= MAX_MEMORY_MB:
            raise InvalidSpec(f"job {self.id}: resources.memory must be a positive size such as 512M or 8G")
        if not 0 <= self.gpus <= MAX_GPUS:
            raise InvalidSpec(f"job {self.id}: resources.gpus must be a whole number from 0 to {MAX_GPUS}")
        if self.retries.attempts < 1:
            raise InvalidSpec(
                f"job {self.id}: retries.attempts must be at least 1 (it counts the first attempt)"
            )
        if (
            self.retries.backoff_initial < 0
            or self.retries.backoff_factor < 1
            or self.retries.backoff_max < 0
        ):
            raise InvalidSpec(f"job {self.id}: retry backoff needs initial >= 0, factor >= 1 and max >= 0")
        if self.affinity not in ("", "soft", "hard"):
            raise InvalidSpec(f"job {self.id}: affinity must be 'soft' or 'hard' (true means hard)")
        if self.affinity and not self.parents:
            raise InvalidSpec(f"job {self.id}: affinity needs a parent whose worker to follow (depends_on)")
        if self.affinity and self.node:
            raise InvalidSpec(f"job {self.id}: give either affinity or node, not both")
        for key in self.env:
            if not key or "=" in key or "\0" in key:
                raise InvalidSpec(f"job {self.id}: invalid environment variable name {key!r}")
        env_bytes = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in self.env.items())
        if env_bytes > limits.env_bytes:
            raise InvalidSpec(
                limits.refusal("env_bytes", f"job {self.id}: its environment is {env_bytes:,} bytes")
            )
        if len(set(self.parents)) != len(self.parents):
            raise InvalidSpec(f"job {self.id}: a parent is listed twice in depends_on")
        if self.id in self.parents:
            raise InvalidSpec(f"job {self.id}: a job cannot depend on itself")
        if len(self.preload) > MAX_PRELOAD or not all(MODULE_PATTERN.match(m) for m in self.preload):
            raise InvalidSpec(
                f"job {self.id}: preload takes at most {MAX_PRELOAD} module names such as dagster or a.b_c"
            )
        self._validate_dynamic(limits)
        self._validate_service()
        self._validate_secrets()

    def _validate_function(self, has_script: bool) -> None:
        if not self.is_function:
            raise InvalidSpec(f"job {self.id}: call is for function tasks (kind 'function')")
        if not self.call:
            raise InvalidSpec(
                f"job {self.id}: a function task needs its call (submit it with client.submit_fn)"
            )
        if len(self.call) > MAX_CALL_CHARS:
            raise InvalidSpec(
                f"job {self.id}: its call is {len(self.call):,} characters pickled, over the "
                f"{MAX_CALL_CHARS:,} limit; pass large data as an artifact or as a future"
            )
        if has_script or self.command or self.project_hash:
            raise InvalidSpec(f"job {self.id}: a function task runs its call, not a script or command")
        if self.map_over or self.branch or self.when:
            raise InvalidSpec(f"job {self.id}: map_over, branch and when are for batch jobs")

    def _validate_secrets(self) -> None:
        if len(self.secrets) > MAX_SECRETS_PER_JOB:
            raise InvalidSpec(
                f"job {self.id}: {len(self.secrets)} secrets; a job may name at most {MAX_SECRETS_PER_JOB}"
            )
        for env_name, secret in self.secrets.items():
            if not SECRET_ENV_PATTERN.match(env_name) or env_name.startswith("TITAN_"):
                raise InvalidSpec(
                    f"job {self.id}: secret {secret[:128]!r} cannot go into environment variable "
                    f"{env_name[:128]!r}: use letters, digits and '_' (not starting with a digit or TITAN_)"
                )
            if not SECRET_NAME_PATTERN.match(secret):
                raise InvalidSpec(
                    f"job {self.id}: invalid secret name {secret[:128]!r}: use 1-128 letters, digits, "
                    "'_', '-' or '.', not starting with '-' or '.'"
                )
            if env_name in self.env:
                raise InvalidSpec(
                    f"job {self.id}: {env_name} is given both in env and in secrets; keep it in one"
                )

    def _validate_numbers(self) -> None:
        """Every number of the spec is finite (NaN would break the timers' ordering) and sane."""
        for owner, numbers in _NUMBERS.items():
            holder = getattr(self, owner) if owner else self
            if holder is _SPEC_FIXED_DEFAULTS.get(owner):  # a policy left at its default: fine
                continue
            for name, field_name in numbers:
                value = getattr(holder, field_name)
                if not -MAX_NUMBER <= value <= MAX_NUMBER:  # False for NaN too
                    raise InvalidSpec(
                        f"job {self.id}: {name} must be a finite number below {MAX_NUMBER:g}, not {value!r}"
                    )
        if self.replicas > MAX_REPLICAS:
            raise InvalidSpec(f"job {self.id}: replicas must be at most {MAX_REPLICAS:,}")

    def _validate_dynamic(self, limits: Limits) -> None:
        if self.trigger_rule not in TRIGGER_RULES:
            raise InvalidSpec(
                f"job {self.id}: unknown trigger_rule {self.trigger_rule!r}; use {', '.join(TRIGGER_RULES)}"
            )
        if self.when:
            from titan_runtime.core.expr import ExpressionError, check

            if len(self.when) > limits.expression_length:
                raise InvalidSpec(
                    limits.refusal(
                        "expression_length", f"job {self.id}: its condition is {len(self.when):,} characters"
                    )
                )
            try:
                check(self.when, limits.expression_length)
            except ExpressionError as exc:
                raise InvalidSpec(f"job {self.id}: when {self.when[:200]!r}: {exc}") from None
        if self.map_over and self.map_over not in self.parents:
            raise InvalidSpec(
                f"job {self.id}: map_over {self.map_over!r} must be one of its parents (depends_on)"
            )
        if self.is_service and (self.map_over or self.branch or self.approval.required):
            raise InvalidSpec(
                f"job {self.id}: map_over, branch and approval are for batch jobs, not services"
            )
        if self.approval.required and self.approval.timeout <= 0:
            raise InvalidSpec(f"job {self.id}: the approval timeout (max_wait_seconds) must be positive")
        for tags in self.retries.fallback:
            for tag in tags:
                if not TAG_PATTERN.match(tag):
                    raise InvalidSpec(f"job {self.id}: invalid tag {tag!r} in retries.fallback")

    @property
    def need(self) -> Need:
        """What it holds on its worker beyond slots (NO_NEED for most jobs, which ask for nothing)."""
        if not (self.cpus or self.memory_mb or self.gpus):
            return NO_NEED
        return Need(millicpus(self.cpus), self.memory_mb, self.gpus)

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    @property
    def service_id(self) -> str:
        return self.service or self.id

    @property
    def port_names(self) -> tuple[str, ...]:
        """The ports to lease: the named ones, or one called "port"."""
        return self.ports or ("port",)

    def _validate_service(self) -> None:
        if not self.is_service:
            if self.port or self.ports or self.replicas != 1:
                raise InvalidSpec(f"job {self.id}: port, ports and replicas are for services (type: service)")
            return
        if not 0 <= self.port < 65536:
            raise InvalidSpec(f"job {self.id}: port must be between 1 and 65535")
        if self.port and len(self.ports) > 1:
            raise InvalidSpec(
                f"job {self.id}: a fixed port goes with a single port, not named ports {list(self.ports)}"
            )
        for name in self.ports:
            if not PORT_NAME_PATTERN.match(name):
                raise InvalidSpec(f"job {self.id}: invalid port name {name!r}: use letters, digits and '_'")
        if len(set(self.ports)) != len(self.ports):
            raise InvalidSpec(f"job {self.id}: a port name is listed twice")
        if self.replicas < 1:
            raise InvalidSpec(f"job {self.id}: replicas must be at least 1")
        if self.port and self.replicas > 1:
            raise InvalidSpec(f"job {self.id}: replicas of a service cannot share the fixed port {self.port}")
        h, r = self.health, self.restart
        if h.interval <= 0 or h.timeout <= 0 or h.grace < 0 or h.failures < 1 or not 100 <= h.expect < 600:
            raise InvalidSpec(
                f"job {self.id}: health needs interval > 0, timeout > 0, grace >= 0, failures >= 1, expect an HTTP status"
            )
        if h.http and not h.http.startswith("/"):
            raise InvalidSpec(f"job {self.id}: health.http is a path starting with '/', like /healthz")
        if r.attempts < 1 or r.window <= 0 or r.backoff_initial < 0 or r.backoff_max < 0:
            raise InvalidSpec(f"job {self.id}: restart needs attempts >= 1 and a window > 0 seconds")
        if self.timeout:
            raise InvalidSpec(f"job {self.id}: a service runs until stopped; timeout is for batch jobs")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the fields left at their defaults (most of them, in most jobs): a
        large DAG is encoded and stored several times faster. `from_dict` restores the defaults."""
        global _spec_to_dict
        if _spec_to_dict is None:  # made at the first use: a client never stores a spec
            _spec_to_dict = _compile_to_dict()
        return _spec_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """The spec `to_dict` wrote (not validated again: it was when it was submitted)."""
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in _SPEC_FIELDS}
        if not isinstance(kwargs.get("id"), str):
            raise TypeError(f"a job spec without an id: {str(data)[:200]}")

        for name, kind in (
            ("retries", RetryPolicy),
            ("health", HealthCheck),
            ("restart", RestartPolicy),
            ("approval", ApprovalGate),
        ):
            if isinstance(kwargs.get(name), dict):
                given = dict(kwargs[name])
                if "fallback" in given:
                    given["fallback"] = tuple(frozenset(tags) for tags in given["fallback"])
                kwargs[name] = kind(**given)
        for name in ("command", "args", "parents", "ports", "preload"):
            if name in kwargs:
                kwargs[name] = tuple(kwargs[name])
        if "tags" in kwargs:
            kwargs["tags"] = frozenset(t for t in kwargs["tags"] if t and t != GENERAL)
        return cls(**kwargs)


#: Larger numbers of seconds (or counts) than anyone means: 10 years.
MAX_NUMBER = 10 * 365 * 24 * 3600.0
MAX_REPLICAS = 10_000

_SPEC_FIELDS = frozenset(f.name for f in fields(JobSpec) if f.init)
_REQUIRED = object()  # never equal to a value: required fields are always written
_SPEC_DEFAULTS: tuple[tuple[str, Any], ...] = tuple(
    (
        f.name,
        f.default
        if f.default is not MISSING
        else f.default_factory()
        if f.default_factory is not MISSING
        else _REQUIRED,
    )
    for f in fields(JobSpec)
    if f.init
)


def _policy_dict(value: Any) -> dict[str, Any]:
    out = {g.name: getattr(value, g.name) for g in fields(value)}
    if "fallback" in out:
        out["fallback"] = [sorted(tags) for tags in out["fallback"]]
    return out


def _compile_to_dict() -> Any:
    """`JobSpec.to_dict` as one generated function with a test per field, chosen by the field's
    type (a loop over the fields costs twice as much, and it runs once per job submitted)."""
    lines = ["def to_dict(s):", "    out = {}"]
    names: dict[str, Any] = {"policy": _policy_dict}
    for i, (name, default) in enumerate(_SPEC_DEFAULTS):
        names[f"d{i}"] = default
        lines.append(f"    v = s.{name}")
        if default is _REQUIRED:
            lines.append(f"    out[{name!r}] = v")
        elif isinstance(default, RetryPolicy | HealthCheck | RestartPolicy | ApprovalGate):
            lines.append(f"    if v is not d{i} and v != d{i}: out[{name!r}] = policy(v)")
        elif isinstance(default, frozenset):
            lines.append(f"    if v: out[{name!r}] = sorted(v)")
        elif isinstance(default, tuple):
            lines.append(f"    if v: out[{name!r}] = list(v)")
        elif isinstance(default, dict):
            lines.append(f"    if v: out[{name!r}] = dict(v)")
        else:
            lines.append(f"    if v != d{i}: out[{name!r}] = v")
    lines.append("    return out")
    exec(compile("\n".join(lines) + "\n", "<JobSpec.to_dict>", "exec"), names)
    return names["to_dict"]


_spec_to_dict: Any = None


#: What from_dict starts every spec from (env and labels are new dicts each time).
_SPEC_FIXED_DEFAULTS = {name: value for name, value in _SPEC_DEFAULTS if value is not _REQUIRED}
#: Each field's default, the very instance a spec holds when it was not given (to_dict and
#: spec_from_pb recognise the default policies by identity). Read only.
SPEC_DEFAULTS: Mapping[str, Any] = MappingProxyType(_SPEC_FIXED_DEFAULTS)

#: Every number of a spec, by the policy it is in ("": the spec itself): (its name in messages, its field).
_NUMBERS: dict[str, tuple[tuple[str, str], ...]] = {
    "": (("timeout", "timeout"), ("delay", "delay"), ("fail_if_unplaceable", "unplaceable_after")),
    **{
        owner: tuple((f"{owner}.{f.name}", f.name) for f in fields(kind) if f.type in ("int", "float"))
        for owner, kind in (
            ("retries", RetryPolicy),
            ("health", HealthCheck),
            ("restart", RestartPolicy),
            ("approval", ApprovalGate),
        )
    },
}
