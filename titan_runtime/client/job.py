"""`TitanJob`: the original Titan's job vocabulary, plus what it lacked (commands, env, timeouts, retries).

`a >> b` makes `a` a parent of `b`; `[a, b] >> c` and `a >> [b, c]` work as in Airflow.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from titan_runtime.client.errors import InvalidJob
from titan_runtime.core.names import SECRET_ENV_PATTERN


@dataclass(eq=False)
class TitanJob:
    """One unit of work: a script file or a command, and where and how to run it.

    The first twelve parameters are the original Titan's, in its order: `delay` is in
    milliseconds there (YAML's `delay` is in seconds), `requirement` is a worker tag ("GENERAL":
    any worker), `affinity=True` runs the job on the worker that ran its (first) parent.
    """

    job_id: str | None = None
    filename: str | None = None
    job_type: str = "RUN_PAYLOAD"
    args: str | list[str] | None = None
    parents: list[str | TitanJob] | None = None
    port: int = 0
    is_archive: bool = False
    priority: int = 1
    delay: float = 0
    affinity: bool | str = False
    requirement: str = "GENERAL"
    hitl_message: str | None = None
    max_wait_seconds: int = 172800
    # Beyond the original:
    command: list[str] | None = field(default=None, kw_only=True)
    env: dict[str, str] | None = field(default=None, kw_only=True)
    timeout: float | None = field(default=None, kw_only=True)
    tags: list[str] | None = field(default=None, kw_only=True)
    retries: int | dict[str, Any] | None = field(default=None, kw_only=True)
    node: str | None = field(default=None, kw_only=True)
    labels: dict[str, str] | None = field(default=None, kw_only=True)
    slots: int = field(default=1, kw_only=True)
    #: Ship this folder as the job's working tree (YAML `project: true`); `filename` is inside it.
    project_dir: str | None = field(default=None, kw_only=True)
    #: {"cpus": 2, "memory": "8G", "gpus": 1}: held on its worker while it runs (placed only where
    #: they fit); memory is also its enforced limit. "memory_mb": N is the older spelling of memory.
    resources: dict[str, Any] | None = field(default=None, kw_only=True)
    # Services (job_type="SERVICE"): `port` (above) is a fixed port; otherwise one is leased.
    ports: list[str] | None = field(default=None, kw_only=True)  # named ports, each leased
    health: dict[str, Any] | None = field(
        default=None, kw_only=True
    )  # {tcp: true} or {http: "/healthz", ...}
    restart: dict[str, Any] | None = field(default=None, kw_only=True)  # {attempts: 5, window: 600}
    replicas: int = field(default=1, kw_only=True)
    # Dynamic DAGs:
    trigger_rule: str = field(
        default="all_success", kw_only=True
    )  # all_success all_done one_success none_failed
    when: str | None = field(default=None, kw_only=True)  # a condition on the parents' results
    branch: bool = field(default=False, kw_only=True)  # the result names the children to follow
    map_over: str | TitanJob | None = field(default=None, kw_only=True)  # once per item of this parent's list
    approval: dict[str, Any] | None = field(default=None, kw_only=True)  # {message, timeout}; or hitl_message
    allow_failure: bool = field(default=False, kw_only=True)  # its failure does not fail the run
    #: Seconds after it is ready at which the job fails if no connected worker can run it (its tags,
    #: node or slots); None: it waits for such a worker, however long.
    fail_if_unplaceable: float | None = field(default=None, kw_only=True)
    #: Packages the worker's launcher imports once, before forking this job: a `{python} -m PKG`
    #: or `.py` job then starts with them imported (["dagster", "titan_dagster"]: a Dagster step).
    preload: list[str] | None = field(default=None, kw_only=True)
    #: Secrets set with `titan-runtime secret set NAME`, in the job's environment: a list of names
    #: (each its own variable) or {ENV_VAR: NAME}. Only the names are in the job's definition.
    secrets: list[str] | dict[str, str] | None = field(default=None, kw_only=True)

    # ------------------------------------------------------------------ DAG builder

    def _add_parent(self, parent: TitanJob) -> None:
        self.parents = list(self.parents or [])
        if parent.id not in self.parent_ids:
            self.parents.append(parent)

    def __rshift__(self, other: TitanJob | list[TitanJob]) -> TitanJob | list[TitanJob]:
        for child in other if isinstance(other, list) else [other]:
            child._add_parent(self)
        return other

    def __rrshift__(self, other: list[TitanJob]) -> TitanJob:
        for parent in other:
            self._add_parent(parent)
        return self

    # ------------------------------------------------------------------ normalised views

    @property
    def id(self) -> str:
        if self.job_id:
            return self.job_id
        base = os.path.basename(self.filename) if self.filename else (self.command or ["job"])[0]
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(os.path.basename(base))[0]).lstrip(".-")
        return stem or "job"

    @property
    def parent_ids(self) -> list[str]:
        ids = [p.id if isinstance(p, TitanJob) else str(p) for p in self.parents or []]
        mapped = self.map_over_id
        if mapped and mapped not in ids:
            ids.append(mapped)  # map_over implies depending on that parent
        return ids

    @property
    def map_over_id(self) -> str:
        if self.map_over is None:
            return ""
        return self.map_over.id if isinstance(self.map_over, TitanJob) else str(self.map_over)

    @property
    def arg_list(self) -> list[str]:
        if self.args is None or self.args == "":
            return []
        if isinstance(self.args, str):
            return shlex.split(self.args)
        return [str(a) for a in self.args]

    @property
    def tag_list(self) -> list[str]:
        tags = [t for t in (self.tags or []) if t]
        if self.requirement and self.requirement != "GENERAL" and self.requirement not in tags:
            tags.insert(0, self.requirement)
        return tags

    @property
    def affinity_mode(self) -> str:
        if self.affinity is True:
            return "hard"
        if self.affinity in (False, None, ""):
            return ""
        mode = str(self.affinity).lower()
        if mode in ("true", "hard"):
            return "hard"
        if mode == "soft":
            return "soft"
        raise InvalidJob(
            f"job {self.id}: affinity must be true, false, 'soft' or 'hard', not {self.affinity!r}"
        )

    def retry_policy(self) -> dict[str, Any] | None:
        """The retries setting as RetryPolicy fields. An int means that many retries after the first attempt."""
        r = self.retries
        if r is None:
            return None
        if isinstance(r, bool) or not isinstance(r, (int, dict)):
            raise InvalidJob(f"job {self.id}: retries must be a number or a mapping, not {r!r}")
        if isinstance(r, int):
            if r < 0:
                raise InvalidJob(f"job {self.id}: retries must be zero or more")
            return {"attempts": r + 1}
        policy: dict[str, Any] = {}
        unknown = set(r) - {"attempts", "backoff", "max_lost", "fallback"}
        if unknown:
            raise InvalidJob(
                f"job {self.id}: unknown retries key(s) {sorted(unknown)}; use attempts, backoff, max_lost, fallback"
            )
        if "fallback" in r:
            policy["fallback"] = [self._fallback_tags(entry) for entry in r["fallback"] or []]

        if "attempts" in r:
            policy["attempts"] = int(r["attempts"])
        if "max_lost" in r:
            policy["max_lost"] = int(r["max_lost"])
        backoff = r.get("backoff")
        if isinstance(backoff, (int, float)) and not isinstance(backoff, bool):
            policy["backoff_initial"] = float(backoff)
        elif isinstance(backoff, dict):
            for key in backoff:
                if key not in ("initial", "factor", "max"):
                    raise InvalidJob(f"job {self.id}: unknown backoff key {key!r}; use initial, factor, max")
                policy[f"backoff_{key}"] = float(backoff[key])
        elif backoff is not None:
            raise InvalidJob(f"job {self.id}: backoff must be seconds or {{initial, factor, max}}")
        return policy

    def _fallback_tags(self, entry: Any) -> list[str]:
        """A fallback attempt's hardware: {requirement: GPU} or {tags: [...]}; GENERAL means any worker."""
        if not isinstance(entry, dict) or not set(entry) <= {"requirement", "tags"}:
            raise InvalidJob(
                f"job {self.id}: each retries.fallback entry is {{requirement: TAG}} or {{tags: [...]}}"
            )
        tags = list(entry.get("tags") or [])
        requirement = entry.get("requirement")
        if requirement and requirement != "GENERAL":
            tags.insert(0, str(requirement))
        return tags

    def secret_env(self) -> dict[str, str]:
        """`secrets` as {environment variable: secret name}."""
        given = self.secrets
        if given is None:
            return {}
        if isinstance(given, dict):
            return {str(env): str(name) for env, name in given.items()}
        if isinstance(given, (str, bytes)) or not isinstance(given, (list, tuple)):
            raise InvalidJob(
                f"job {self.id}: secrets is a list of names or a mapping {{ENV_VAR: NAME}}, not {given!r}"
            )
        out: dict[str, str] = {}
        for name in given:
            if not SECRET_ENV_PATTERN.match(str(name)):
                raise InvalidJob(
                    f"job {self.id}: secret {name!r} is no environment variable name; give the variable: "
                    f"secrets={{'MY_VAR': {name!r}}} (YAML: secrets: {{MY_VAR: {name}}})"
                )
            out[str(name)] = str(name)
        return out

    def approval_gate(self) -> dict[str, Any] | None:
        """The approval gate after this job: `approval={message, timeout}`, or the original `hitl_message`."""
        if self.approval is None and not self.hitl_message:
            return None
        given = dict(self.approval or {})
        unknown = set(given) - {"message", "timeout"}
        if unknown:
            raise InvalidJob(
                f"job {self.id}: unknown approval key(s) {sorted(unknown)}; use message, timeout"
            )
        timeout = given.get("timeout", self.max_wait_seconds)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidJob(f"job {self.id}: the approval timeout must be a positive number of seconds")
        return {"message": str(given.get("message", self.hitl_message or "")), "timeout": float(timeout)}
