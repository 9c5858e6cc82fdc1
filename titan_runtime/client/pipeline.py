"""YAML pipelines: the original Titan's format, run unchanged, plus what it lacked.

A file is checked whole before anything is submitted: every error names the file and line,
unknown keys get a did-you-mean, and dependency cycles name the jobs in them.

    name: etl                  # root keys: name, version (ignored), project, jobs, labels
    project: true              # ship the YAML's folder as each job's working tree
    jobs:
      - id: extract
        file: extract.py       # or: command: [python, -m, mytool]
        args: "--date 2024-01-01"
        requirement: GPU       # a worker tag; GENERAL (default) means any worker
        depends_on: [setup]
        priority: 10
        delay: 2               # seconds after the job becomes ready
        affinity: true         # true/hard: the parent's worker; soft: prefer it
        retries: {attempts: 3, backoff: {initial: 1, factor: 2, max: 30}}
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from titan_runtime.client.errors import InvalidJob
from titan_runtime.client.job import TitanJob
from titan_runtime.core.dag import find_cycle
from titan_runtime.core.expr import ExpressionError
from titan_runtime.core.expr import check as check_expression
from titan_runtime.core.names import ID_PATTERN, MODULE_PATTERN, TAG_PATTERN, TRIGGER_RULES
from titan_runtime.core.resources import parse_resources
from titan_runtime.yamlbudget import YamlBudgetError
from titan_runtime.yamlbudget import load as load_yaml

ROOT_KEYS = ("name", "version", "project", "jobs", "labels", "description")
JOB_KEYS = (
    "id",
    "file",
    "command",
    "type",
    "depends_on",
    "requirement",
    "tags",
    "priority",
    "delay",
    "affinity",
    "node",
    "port",
    "args",
    "env",
    "timeout",
    "retries",
    "labels",
    "slots",
    "resources",
    "ports",
    "health",
    "restart",
    "replicas",
    "trigger_rule",
    "when",
    "branch",
    "map_over",
    "approval",
    "allow_failure",
    "fail_if_unplaceable",
    "secrets",
    "preload",
    "hitl_message",
    "max_wait_seconds",
    "description",
)


class PipelineError(InvalidJob):
    """The file does not describe a valid pipeline; `errors` lists every problem found, with lines."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        super().__init__(f"{path}: {len(errors)} error(s):\n  " + "\n  ".join(errors))


@dataclass
class Pipeline:
    """A validated pipeline, ready to submit as one run."""

    path: Path
    name: str
    jobs: list[TitanJob]
    labels: dict[str, str] = field(default_factory=dict)
    project: bool = False


# ---------------------------------------------------------------- YAML with line numbers


class _Located(dict):  # type: ignore[type-arg]
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class _LocatedList(list):  # type: ignore[type-arg]
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Located:
    mapping = _Located()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[str(key)] = key_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _LocatedList:
    items = _LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    items.line = node.start_mark.line + 1
    items.item_lines = [child.start_mark.line + 1 for child in node.value]
    return items


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


# ---------------------------------------------------------------- checking


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[str] = []

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.path.name}:{line}: {message}")

    def unknown_keys(self, mapping: _Located, allowed: tuple[str, ...], where: str) -> None:
        for key in mapping:
            if str(key) not in allowed:
                guess = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean '{guess[0]}'?)" if guess else f"; known keys: {', '.join(allowed)}"
                self.error(mapping.key_lines.get(str(key), mapping.line), f"{where}unknown key '{key}'{hint}")

    def typed(
        self,
        mapping: _Located,
        key: str,
        kinds: tuple[type, ...],
        what: str,
        where: str,
        check: Callable[[Any], bool] | None = None,
    ) -> Any:
        if key not in mapping or mapping[key] is None:
            return None
        value = mapping[key]
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if ok and check is not None:
            ok = check(value)
        if not ok:
            self.error(
                mapping.key_lines.get(key, mapping.line), f"{where}'{key}' must be {what}, not {value!r}"
            )
            return None
        return value


def _string_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
    ):
        return [str(v) for v in value]
    return None


def load_pipeline(path: str | os.PathLike[str], text: str | None = None) -> Pipeline:
    """Read and check a pipeline file; raise PipelineError listing every problem. With `text`, the
    pipeline is that text, as if it were the file at `path` (its jobs' files are relative to it)."""
    file = Path(path)
    if text is None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise PipelineError(file, [f"{file}: cannot read it ({exc.strerror or exc})"]) from None
    try:
        data = load_yaml(text, _Loader)
    except YamlBudgetError as exc:
        raise PipelineError(file, [f"{file.name}:{exc.line}: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise PipelineError(
            file, [f"{file.name}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]
        ) from None
    c = _Checker(file)
    if not isinstance(data, _Located):
        raise PipelineError(file, [f"{file.name}:1: a pipeline is a mapping with a 'jobs' list"])
    c.unknown_keys(data, ROOT_KEYS, "")
    name = c.typed(data, "name", (str,), "a string", "") or file.stem
    project = c.typed(data, "project", (bool,), "true or false", "") or False
    labels = c.typed(data, "labels", (dict,), "a mapping", "") or {}
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, _LocatedList) or not raw_jobs:
        c.error(data.key_lines.get("jobs", data.line), "'jobs' must be a non-empty list of jobs")
        raise PipelineError(file, c.errors)
    base = file.resolve().parent
    jobs: list[TitanJob] = []
    lines: dict[str, int] = {}
    edges: dict[str, list[str]] = {}
    for index, raw in enumerate(raw_jobs):
        line = raw_jobs.item_lines[index]
        if not isinstance(raw, _Located):
            c.error(line, f"job #{index + 1} must be a mapping with at least 'id' and 'file'")
            continue
        job_id, parents, job = _job(c, raw, base, project, index)
        if job_id is None:
            continue
        if job_id in lines:
            c.error(
                raw.key_lines.get("id", raw.line),
                f"duplicate job id '{job_id}' (first at line {lines[job_id]})",
            )
            continue
        lines[job_id] = raw.key_lines.get("id", raw.line)
        edges[job_id] = parents
        if job is not None:
            jobs.append(job)
    for job_id, parents in edges.items():
        for parent in parents:
            if parent not in lines:
                guess = difflib.get_close_matches(parent, list(lines), n=1)
                hint = f" (did you mean '{guess[0]}'?)" if guess else ""
                c.error(lines[job_id], f"job '{job_id}' depends on unknown job '{parent}'{hint}")
    if not c.errors:
        cycle = find_cycle(edges)
        if cycle:
            c.error(lines[cycle[0]], "dependency cycle: " + " -> ".join(reversed(cycle)))
    if c.errors:
        raise PipelineError(file, c.errors)
    return Pipeline(
        path=file,
        name=str(name),
        jobs=jobs,
        labels={str(k): str(v) for k, v in labels.items()},
        project=project,
    )


def _job(
    c: _Checker, raw: _Located, base: Path, project: bool, index: int
) -> tuple[str | None, list[str], TitanJob | None]:
    """(id, parents, job): the job is None when it has errors, the id None when it has none usable."""
    before = len(c.errors)
    job_id = raw.get("id")
    if not isinstance(job_id, (str, int)) or isinstance(job_id, bool) or not ID_PATTERN.match(str(job_id)):
        if job_id is None:
            c.error(raw.line, f"job #{index + 1} has no 'id'")
        else:
            c.error(
                raw.key_lines.get("id", raw.line),
                f"invalid job id {job_id!r}: use letters, digits, '_', '-' or '.'",
            )
        return None, [], None
    job_id = str(job_id)
    where = f"job '{job_id}': "
    c.unknown_keys(raw, JOB_KEYS, where)
    file = c.typed(raw, "file", (str,), "a path (relative to the pipeline file)", where)
    command = raw.get("command")
    if command is not None:
        command = shlex.split(command) if isinstance(command, str) else _string_list(command)
        if not command:
            c.error(
                raw.key_lines.get("command", raw.line), f"{where}'command' must be a non-empty list or string"
            )
    if file is None and command is None and "file" not in raw:
        c.error(raw.line, f"{where}give 'file' (a script) or 'command'")
    if file is not None and command is not None:
        c.error(raw.key_lines["command"], f"{where}give either 'file' or 'command', not both")
    if file is not None:
        script = (base / file).resolve()
        if not script.is_file():
            c.error(
                raw.key_lines.get("file", raw.line), f"{where}file '{file}' does not exist (looked in {base})"
            )
        elif project and base not in script.parents:
            c.error(
                raw.key_lines.get("file", raw.line),
                f"{where}file '{file}' is outside the project folder {base}",
            )
    kind = c.typed(
        raw, "type", (str,), "'run' or 'service'", where, lambda v: v.lower() in ("run", "service")
    )
    depends = raw.get("depends_on")
    parents: list[str] = []
    if depends is not None:
        parents = _string_list(depends) or []
        if not parents and depends != []:
            c.error(raw.key_lines["depends_on"], f"{where}'depends_on' must be a list of job ids")
    requirement = c.typed(raw, "requirement", (str,), "a worker tag", where)
    tags = raw.get("tags")
    tag_list = _string_list(tags) if tags is not None else []
    if tag_list is None:
        c.error(raw.key_lines["tags"], f"{where}'tags' must be a list of tags")
        tag_list = []
    for tag in [*(tag_list or []), *([requirement] if requirement else [])]:
        if not TAG_PATTERN.match(tag):
            c.error(
                raw.key_lines.get("tags", raw.key_lines.get("requirement", raw.line)),
                f"{where}invalid tag '{tag}'",
            )
    priority = c.typed(raw, "priority", (int,), "an integer", where)
    delay = c.typed(raw, "delay", (int, float), "a number of seconds >= 0", where, lambda v: v >= 0)
    timeout = c.typed(raw, "timeout", (int, float), "a number of seconds > 0", where, lambda v: v > 0)
    unplaceable = c.typed(
        raw, "fail_if_unplaceable", (int, float), "a number of seconds > 0", where, lambda v: v > 0
    )
    affinity = raw.get("affinity")
    if affinity is not None and not (isinstance(affinity, bool) or str(affinity).lower() in ("soft", "hard")):
        c.error(raw.key_lines["affinity"], f"{where}'affinity' must be true, false, soft or hard")
    if affinity not in (None, False) and not parents:
        c.error(
            raw.key_lines["affinity"],
            f"{where}'affinity' needs a parent in 'depends_on' whose worker to follow",
        )
    node = c.typed(raw, "node", (str,), "a worker name", where)
    port = c.typed(raw, "port", (int,), "a port number", where, lambda v: 0 <= v < 65536)
    args = raw.get("args")
    if args is not None and not isinstance(args, str) and _string_list(args) is None:
        c.error(raw.key_lines["args"], f"{where}'args' must be a string or a list")
    env = c.typed(raw, "env", (dict,), "a mapping of names to values", where) or {}
    labels = c.typed(raw, "labels", (dict,), "a mapping", where) or {}
    retries = raw.get("retries")
    if retries is not None and not (isinstance(retries, (int, dict)) and not isinstance(retries, bool)):
        c.error(
            raw.key_lines["retries"],
            f"{where}'retries' must be a number of retries or {{attempts, backoff, max_lost}}",
        )
        retries = None
    slots = c.typed(raw, "slots", (int,), "an integer >= 1", where, lambda v: v >= 1)
    resources = c.typed(raw, "resources", (dict,), "a mapping like {cpus: 2, memory: 8G, gpus: 1}", where)
    if resources:
        try:
            parse_resources(resources, where)
        except ValueError as exc:
            c.error(raw.key_lines["resources"], str(exc))
            resources = None
    ports = raw.get("ports")
    port_names = _string_list(ports) if ports is not None else None
    if ports is not None and not port_names:
        c.error(raw.key_lines["ports"], f"{where}'ports' must be a list of port names, like [http, metrics]")
    health = c.typed(raw, "health", (dict,), "a mapping like {http: /healthz, expect: 200}", where)
    restart = c.typed(raw, "restart", (dict,), "a mapping like {attempts: 5, window: 10m}", where)
    replicas = c.typed(raw, "replicas", (int,), "an integer >= 1", where, lambda v: v >= 1)
    trigger_rule = c.typed(
        raw, "trigger_rule", (str,), "all_success, all_done, one_success or none_failed", where
    )
    when = c.typed(raw, "when", (str,), "a condition such as 'measure.load > 0.8'", where)
    branch = c.typed(raw, "branch", (bool,), "true or false", where)
    map_over = c.typed(raw, "map_over", (str,), "the id of a parent with a list result", where)
    approval = c.typed(raw, "approval", (dict,), "a mapping like {message: ..., timeout: 3600}", where)
    allow_failure = c.typed(raw, "allow_failure", (bool,), "true or false", where)
    secrets = c.typed(raw, "secrets", (list, dict), "a list of secret names or {ENV_VAR: NAME}", where)
    preload = c.typed(raw, "preload", (list,), "a list of package names such as [pandas]", where)
    if preload and not all(isinstance(m, str) and MODULE_PATTERN.match(m) for m in preload):
        c.error(raw.key_lines["preload"], f"{where}'preload' takes package names such as pandas or a.b_c")
    if map_over and map_over not in parents:
        parents.append(map_over)  # map_over implies depending on it
    is_service = (kind or "run").lower() == "service"
    for key in ("ports", "health", "restart", "replicas"):
        if key in raw and not is_service:
            c.error(raw.key_lines[key], f"{where}'{key}' is for services: add 'type: service'")
    hitl = c.typed(raw, "hitl_message", (str,), "a message", where)
    max_wait = c.typed(raw, "max_wait_seconds", (int,), "an integer", where)
    if len(c.errors) > before:
        return job_id, parents, None
    job = TitanJob(
        job_id=job_id,
        filename=str((base / file).resolve()) if file else None,
        job_type="SERVICE" if (kind or "run").lower() == "service" else "RUN_PAYLOAD",
        args=args if isinstance(args, str) else _string_list(args) if args is not None else None,
        parents=list(parents),
        port=port or 0,
        priority=priority if priority is not None else 1,
        delay=float(delay or 0) * 1000.0,  # TitanJob keeps the original SDK's milliseconds
        affinity=affinity if affinity is not None else False,
        requirement=requirement or "GENERAL",
        hitl_message=hitl,
        max_wait_seconds=max_wait if max_wait is not None else 172800,
        command=command,
        env={str(k): str(v) for k, v in env.items()},
        timeout=float(timeout) if timeout else None,
        fail_if_unplaceable=float(unplaceable) if unplaceable else None,
        tags=tag_list or None,
        retries=retries,
        node=node,
        labels={str(k): str(v) for k, v in labels.items()},
        slots=slots or 1,
        project_dir=str(base) if project else None,
        resources=dict(resources) if resources else None,
        ports=port_names,
        health=dict(health) if health else None,
        restart=dict(restart) if restart else None,
        replicas=replicas or 1,
        trigger_rule=trigger_rule or "all_success",
        when=when,
        branch=bool(branch),
        map_over=map_over,
        approval=dict(approval) if approval else None,
        allow_failure=bool(allow_failure),
        secrets=dict(secrets) if isinstance(secrets, dict) else list(secrets) if secrets else None,
        preload=list(preload) if preload else None,
    )

    try:
        job.retry_policy()
        job.affinity_mode  # noqa: B018 - validates
        job.approval_gate()
        job.secret_env()
        if job.trigger_rule not in TRIGGER_RULES:
            raise InvalidJob(
                f"job {job.id}: unknown trigger_rule {job.trigger_rule!r}; use {', '.join(TRIGGER_RULES)}"
            )
        if job.when:
            try:
                check_expression(job.when)
            except ExpressionError as exc:
                raise InvalidJob(f"job {job.id}: when {job.when!r}: {exc}") from None
    except InvalidJob as exc:
        c.error(raw.line, str(exc))
        return job_id, parents, None
    return job_id, parents, job
