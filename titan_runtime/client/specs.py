"""From TitanJob to the wire's JobSpec, uploading the scripts and projects it names (once each:
artifacts are content-addressed), with an error that says what is wrong for anything the
master would refuse."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from titan_runtime.client.errors import InvalidJob
from titan_runtime.client.instructions import Call, Op
from titan_runtime.client.job import TitanJob
from titan_runtime.core.names import TRIGGER_RULES
from titan_runtime.core.resources import parse_resources
from titan_runtime.proto import titan_pb2 as pb

UPLOAD_CHUNK = 1024 * 1024


def file_hash(path: Path) -> str:
    import hashlib  # here: a command that uploads nothing need not load OpenSSL's hashes

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(UPLOAD_CHUNK), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _chunks(path: Path, artifact_hash: str) -> Iterator[pb.ArtifactChunk]:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        first = True
        while True:
            data = fh.read(UPLOAD_CHUNK)
            if not data and not first:
                return
            yield pb.ArtifactChunk(hash=artifact_hash if first else "", size=size if first else 0, data=data)
            first = False
            if not data:
                return


class UploadCache:
    """What a client already knows: the hash of each file it has read, and what the master holds.

    Artifacts are content-addressed and never deleted while the master runs, so a hash the master
    confirmed once needs no second question: submitting one script 200 times uploads it once and
    asks about it once.
    """

    def __init__(self) -> None:
        self.hashes: dict[tuple[str, int, int], str] = {}
        self.present: set[str] = set()

    def hash_of(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        found = self.hashes.get(key)
        if found is None:
            found = self.hashes[key] = file_hash(path)
        return found


def upload(path: Path, cache: UploadCache | None = None) -> Op[str]:
    """Make sure the master has the file's content; return its hash. Uploads only when missing."""
    cache = cache or UploadCache()
    artifact_hash = cache.hash_of(path)
    if artifact_hash not in cache.present:
        present = yield Call("HasArtifact", pb.ArtifactRef(hash=artifact_hash))
        if not present.present:
            ref = yield Call("PutArtifact", _chunks(path, artifact_hash), timeout=None)
            artifact_hash = ref.hash
        cache.present.add(artifact_hash)
    return artifact_hash


HEALTH_KEYS = {
    "tcp": bool,
    "http": str,
    "expect": int,
    "interval": float,
    "timeout": float,
    "grace": float,
    "failures": int,
}
RESTART_KEYS = {"attempts": int, "window": float, "backoff_initial": float, "backoff_max": float}


def _policy_pb(
    job: TitanJob, what: str, given: dict[str, Any] | None, message: Any, keys: dict[str, type]
) -> Any:
    """A service's health or restart mapping as its message, with clear errors for unknown keys or types."""
    values: dict[str, Any] = {}
    for key, value in (given or {}).items():
        kind = keys.get(key)
        if kind is None:
            raise InvalidJob(f"job {job.id}: unknown {what} key {key!r}; use {', '.join(keys)}")
        if key == "window" and isinstance(value, str):
            value = parse_duration(value)
        try:
            values[key] = kind(value) if kind is not bool or isinstance(value, bool) else None
        except (TypeError, ValueError):
            values[key] = None
        if values[key] is None:
            raise InvalidJob(f"job {job.id}: {what}.{key} must be {kind.__name__}, not {value!r}")
    return message(**values)


def _seconds(job: TitanJob, what: str, value: Any) -> float:
    """A number of seconds >= 0 (None: 0), or an InvalidJob naming the job and the option."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidJob(f"job {job.id}: {what} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "10m", "2h" or "1d"."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def upload_project(folder: Path, cache: UploadCache | None = None) -> Op[str]:
    """Archive a project folder and make sure the master has it; return the archive's hash."""
    from titan_runtime.client.project import build_archive  # tarfile and gzip: for projects only

    archive = build_archive(folder)
    try:
        return (yield from upload(archive, cache))
    finally:
        archive.unlink(missing_ok=True)


def job_spec(
    job: TitanJob,
    base_dir: Path,
    uploads: UploadCache,
    projects: dict[str, str] | None = None,
) -> Op[pb.JobSpec]:
    """Turn a TitanJob into the wire spec, uploading its script or project when needed."""

    if job.is_archive:
        raise InvalidJob(
            f"job {job.id}: zipped payloads (is_archive) are not supported; "
            "ship a folder with project_dir=FOLDER (YAML: project: true) instead"
        )
    if job.job_type not in ("RUN_PAYLOAD", "SERVICE"):
        raise InvalidJob(f"job {job.id}: job_type must be 'RUN_PAYLOAD' or 'SERVICE', not {job.job_type!r}")
    if job.filename and job.command:
        raise InvalidJob(f"job {job.id}: give either filename or command, not both")
    if job.command is not None and (not job.command or not str(job.command[0]).strip()):
        raise InvalidJob(f"job {job.id}: the command is empty; give the program to run and its arguments")
    service = job.job_type == "SERVICE"
    # One constructor call with only the fields that differ from the wire's defaults: a message
    # built field by field (empty maps included) costs four times as much, per job of a big DAG.
    given: dict[str, Any] = {
        "id": job.id,
        "kind": "service" if service else "batch",
        "args": job.arg_list,
        "env": {str(k): str(v) for k, v in job.env.items()} if job.env else None,
        "tags": job.tag_list,
        "priority": int(job.priority),
        "timeout": float(job.timeout or 0),
        "delay": float(job.delay or 0) / 1000.0,
        "parents": job.parent_ids,
        "affinity": job.affinity_mode,
        "node": job.node or "",
        "labels": {str(k): str(v) for k, v in job.labels.items()} if job.labels else None,
        "slots": int(job.slots or 1),
        "secrets": job.secret_env(),
        "unplaceable_after": _seconds(job, "fail_if_unplaceable", job.fail_if_unplaceable),
        "preload": [str(m) for m in job.preload] if job.preload else None,
    }
    if service:
        given["port"] = int(job.port or 0)
        given["ports"] = job.ports or []
        given["replicas"] = int(job.replicas or 1)
        given["health"] = _policy_pb(job, "health", job.health, pb.HealthCheck, HEALTH_KEYS)
        given["restart"] = _policy_pb(job, "restart", job.restart, pb.RestartPolicy, RESTART_KEYS)
    if job.resources:
        if not isinstance(job.resources, dict):
            raise InvalidJob(
                f"job {job.id}: resources must be a mapping like {{cpus: 2, memory: 8G, gpus: 1}}"
            )
        try:
            given["cpus"], given["memory_mb"], given["gpus"] = parse_resources(
                job.resources, f"job {job.id}: "
            )
        except ValueError as exc:
            raise InvalidJob(str(exc)) from None
    policy = job.retry_policy()
    if policy is not None:
        fallback = policy.pop("fallback", [])
        given["retries"] = pb.RetryPolicy(**policy, fallback=[pb.TagSet(tags=tags) for tags in fallback])
    if job.trigger_rule not in TRIGGER_RULES:
        raise InvalidJob(
            f"job {job.id}: unknown trigger_rule {job.trigger_rule!r}; use {', '.join(TRIGGER_RULES)}"
        )
    given["trigger_rule"] = job.trigger_rule
    given["when"] = job.when or ""
    given["branch"] = bool(job.branch)
    given["map_over"] = job.map_over_id
    given["allow_failure"] = bool(job.allow_failure)

    gate = job.approval_gate()
    if gate is not None:
        given["approval"] = pb.ApprovalGate(required=True, **gate)

    project = (base_dir / os.path.expanduser(job.project_dir)).resolve() if job.project_dir else None
    if project is not None:
        cache = projects if projects is not None else {}
        if str(project) not in cache:
            cache[str(project)] = yield from upload_project(project, uploads)
        given["project_hash"] = cache[str(project)]
    if job.command:
        given["command"] = [str(c) for c in job.command]
    elif job.filename:
        path = (base_dir / os.path.expanduser(job.filename)).resolve()
        if not path.is_file():
            raise InvalidJob(f"job {job.id}: script {path} does not exist (or is not a file)")
        if project is not None:
            if project not in path.parents:
                raise InvalidJob(f"job {job.id}: script {path} is not inside its project folder {project}")
            given["script_name"] = path.relative_to(project).as_posix()
        else:
            given["script_name"] = path.name
            given["script_hash"] = yield from upload(path, uploads)
    else:
        raise InvalidJob(f"job {job.id}: nothing to run; give a script filename or a command")
    return pb.JobSpec(**{name: value for name, value in given.items() if value})


def job_specs(
    jobs: Sequence[TitanJob], base_dir: Path | None, uploads: UploadCache | None = None
) -> Op[list[pb.JobSpec]]:
    """Every job's wire spec, in order (paths relative to `base_dir`, else the current directory); a
    project folder that several jobs name is archived and uploaded once."""
    base = base_dir or Path.cwd()
    known = uploads if uploads is not None else UploadCache()
    projects: dict[str, str] = {}
    specs = []
    for job in jobs:
        if not isinstance(job, TitanJob):
            raise InvalidJob(f"expected TitanJob objects, got {type(job).__name__}")
        specs.append((yield from job_spec(job, base, known, projects)))
    return specs
