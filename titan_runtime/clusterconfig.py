"""`cluster.yaml`: the master's settings and the worker pools the autoscaler grows and shrinks.

Read by `titan-runtime up --cluster FILE` and `titan-runtime master --cluster FILE`. The whole file
is checked before anything starts; every error names the file and the key (`pools[1].max`) and
says what is expected. The reference is docs/scaling.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from titan_runtime.config import ConfigError, split_host_port
from titan_runtime.core.autoscaler import PoolSpec
from titan_runtime.core.limits import limits_from
from titan_runtime.core.model import GENERAL, TAG_PATTERN
from titan_runtime.core.resources import MAX_CPUS, parse_gpu_ids, parse_memory
from titan_runtime.core.retention import retention_from
from titan_runtime.diskspace import parse_min_free
from titan_runtime.providers import registry
from titan_runtime.yamlbudget import YamlBudgetError
from titan_runtime.yamlbudget import load as load_yaml

POOL_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

#: Keys every pool has, with their PoolSpec field (or None: handled apart).
COMMON_KEYS = {
    "name": None,
    "provider": None,
    "tags": None,
    "slots": int,
    "min": int,
    "max": int,
    "idle_timeout": float,
    "max_launching": int,
    "register_timeout": float,
    "backoff_initial": float,
    "backoff_max": float,
    "drain_deadline": float,
    "cpus": None,
    "memory": None,
    "gpus": None,
}
#: Settings that name files: relative paths are taken from the cluster file's folder.
PATH_KEYS = ("key", "wheelhouse", "secret_file")
MASTER_KEYS = {
    "bind": str,
    "port": int,
    "store": str,
    "heartbeat_interval": float,
    "lease_timeout": float,
    "min_free": str,
    "limits": dict,
    "retention": dict,
    "metrics_port": int,
    "metrics_bind": str,
}
AUTOSCALER_KEYS = {"interval": float, "max_events": int}


@dataclass(frozen=True)
class PoolConfig:
    spec: PoolSpec
    settings: dict[str, Any] = field(default_factory=dict)  # the provider's own keys, checked

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class ClusterFile:
    path: Path
    pools: tuple[PoolConfig, ...] = ()
    master: dict[str, Any] = field(default_factory=dict)
    interval: float = 0.5  # seconds between two autoscaler decisions
    max_events: int = 1000


class ClusterConfigError(ConfigError):
    def __init__(self, path: Path, errors: list[str]) -> None:
        self.errors = errors
        lines = "\n  ".join(errors)
        super().__init__(f"{path} is not a valid cluster file ({len(errors)} error(s)):\n  {lines}")


def _typed(value: Any, kind: type, where: str, errors: list[str]) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool):
        errors.append(f"{where}: expected true or false, got {value!r}")
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        errors.append(f"{where}: expected a whole number, got {value!r}")
        return None
    if kind is dict:
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a mapping, got {value!r}")
            return None
        return value
    if kind is list:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            errors.append(f"{where}: expected a list of strings, got {value!r}")
            return None
        return [str(v) for v in value]
    if not isinstance(value, kind):
        errors.append(f"{where}: expected {'a number' if kind is float else 'a string'}, got {value!r}")
        return None
    return value


def _section(data: Any, keys: dict[str, type], where: str, errors: list[str]) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.append(f"{where}: expected a mapping")
        return {}
    out = {}
    for key, value in data.items():
        if key not in keys:
            errors.append(f"{where}.{key}: unknown key; known: {', '.join(keys)}")
            continue
        checked = _typed(value, keys[key], f"{where}.{key}", errors)
        if checked is not None:
            out[key] = checked
    return out


def _quantities(raw: dict[str, Any], where: str, errors: list[str]) -> dict[str, Any]:
    """The CPUs, memory and GPUs a pool's workers will offer (PoolSpec's cpus, memory_mb, gpus).

    GPUs are the devices' ids, as the worker's --gpus takes them ([0, 1], "0,1" or none), never a
    count: a pool's workers advertise exactly these devices, and jobs get them in
    CUDA_VISIBLE_DEVICES. A bare number is refused rather than guessed at (is `gpus: 2` two
    devices, or device 2?)."""
    out: dict[str, Any] = {}
    if "cpus" in raw:
        cpus = raw["cpus"]
        if isinstance(cpus, bool) or not isinstance(cpus, int) or not 1 <= cpus <= MAX_CPUS:
            errors.append(
                f"{where}.cpus: expected a whole number of CPUs from 1 to {MAX_CPUS:,}, got {cpus!r}"
            )
        else:
            out["cpus"] = cpus
    if "memory" in raw:
        try:
            memory = parse_memory(raw["memory"], f"{where}.memory")
        except ValueError as exc:
            errors.append(str(exc))
        else:
            if memory < 1:
                errors.append(f"{where}.memory: must be at least 1M, got {raw['memory']!r}")
            else:
                out["memory_mb"] = memory
    if "gpus" in raw:
        gpus = raw["gpus"]
        if isinstance(gpus, list) and all(
            isinstance(g, (str, int)) and not isinstance(g, bool) for g in gpus
        ):
            gpus = ",".join(str(g) for g in gpus) or "none"
        if not isinstance(gpus, str):
            errors.append(
                f'{where}.gpus: expected the device ids its workers will have, like [0, 1], "0,1" or none '
                f"(not a count: [0, 1] is two GPUs), got {raw['gpus']!r}"
            )
        else:
            try:
                out["gpus"] = parse_gpu_ids(gpus, f"{where}.gpus")
            except ValueError as exc:
                errors.append(str(exc))
    return out


def _pool(raw: Any, index: int, base: Path, errors: list[str]) -> PoolConfig | None:
    where = f"pools[{index}]"
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a mapping with name, provider, tags, min, max...")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not name or not set(name) <= POOL_NAME_CHARS or len(name) > 40:
        errors.append(f"{where}.name: required: 1-40 letters, digits, '_' or '-' (got {name!r})")
        name = f"#{index}"
    where = f"pools[{index}] ({name})"
    provider = raw.get("provider")
    try:
        if not isinstance(provider, str):
            raise registry.UnknownProvider(f"expected one of {', '.join(registry.names())}, got {provider!r}")
        provider_class = registry.provider_class(provider)
    except registry.UnknownProvider as exc:
        errors.append(f"{where}.provider: {exc}")
        return None
    known = {**COMMON_KEYS, **provider_class.settings_keys}
    before = len(errors)
    for key in raw:
        if key not in known:
            errors.append(f"{where}.{key}: unknown key for provider {provider}; known: {', '.join(known)}")
    tags_raw = raw.get("tags", [])
    tags = _typed(tags_raw, list, f"{where}.tags", errors) or []
    for tag in tags:
        if not TAG_PATTERN.match(tag):
            errors.append(f"{where}.tags: invalid tag {tag!r}: use letters, digits, '_', '-', '.' or ':'")
    values: dict[str, Any] = {}
    for key, kind in COMMON_KEYS.items():
        if kind is None or key not in raw:
            continue
        checked = _typed(raw[key], kind, f"{where}.{key}", errors)
        if checked is not None:
            values[key] = checked
    values.update(_quantities(raw, where, errors))
    settings: dict[str, Any] = {}
    for key, key_type in provider_class.settings_keys.items():
        if key in raw:
            checked = _typed(raw[key], key_type, f"{where}.{key}", errors)
            if checked is not None:
                if key in PATH_KEYS or (key == "python" and "/" in str(checked)):
                    path = Path(os.path.expanduser(str(checked)))
                    checked = str(path if path.is_absolute() else (base / path).resolve())
                settings[key] = checked
    errors.extend(provider_class.check(settings, values, where))
    if "master_address" in settings:
        try:
            split_host_port(settings["master_address"])
        except ConfigError as exc:
            errors.append(f"{where}.master_address: {exc}")
    values.setdefault("register_timeout", provider_class.register_timeout)
    lo, hi = values.get("min", 0), values.get("max", 1)
    if lo < 0:
        errors.append(f"{where}.min: must be 0 or more")
    if hi < 1:
        errors.append(f"{where}.max: must be 1 or more")
    if lo > hi:
        errors.append(f"{where}.min: {lo} is more than max ({hi})")
    for key in ("slots", "max_launching"):
        if values.get(key, 1) < 1:
            errors.append(f"{where}.{key}: must be 1 or more")
    for key in ("idle_timeout", "register_timeout", "backoff_initial", "backoff_max", "drain_deadline"):
        if values.get(key, 1.0) <= 0:
            errors.append(f"{where}.{key}: must be more than 0 seconds")
    if len(errors) > before:
        return None
    spec = PoolSpec(
        name=name,
        provider=provider,
        tags=frozenset(t for t in tags if t != GENERAL),
        **values,
    )
    return PoolConfig(spec, settings)


def load_cluster_file(path: str | os.PathLike[str]) -> ClusterFile:
    """Read and check a cluster file; raise ClusterConfigError listing every problem."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the cluster file {file}: {exc.strerror or exc}") from None
    try:
        data = load_yaml(text)
    except YamlBudgetError as exc:
        raise ClusterConfigError(file, [f"line {exc.line}: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise ClusterConfigError(file, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ClusterConfigError(file, ["expected a mapping with a `pools:` list"])
    errors: list[str] = []
    for key in data:
        if key not in ("master", "autoscaler", "pools"):
            errors.append(f"{key}: unknown key; known: master, autoscaler, pools")
    master = _section(data.get("master"), MASTER_KEYS, "master", errors)
    if master.get("store") not in (None, "sqlite", "memory"):
        errors.append(f"master.store: expected sqlite or memory, got {master['store']!r}")
    if "limits" in master:
        try:
            limits_from(master["limits"])
        except ValueError as exc:
            errors.append(f"master.limits: {exc}")
    if "retention" in master:
        try:
            retention_from(master["retention"])
        except ValueError as exc:
            errors.append(f"master.retention: {exc}")
    if "min_free" in master:
        try:
            parse_min_free(master["min_free"])
        except ValueError as exc:
            errors.append(f"master.min_free: {exc}")
    if not 0 <= master.get("metrics_port", 0) <= 65535:
        errors.append(
            f"master.metrics_port: expected a port, 0-65535 (0: any free port), got {master['metrics_port']}"
        )
    scaler = _section(data.get("autoscaler"), AUTOSCALER_KEYS, "autoscaler", errors)
    if scaler.get("interval", 1.0) <= 0:
        errors.append("autoscaler.interval: must be more than 0 seconds")
    raw_pools = data.get("pools")
    if not isinstance(raw_pools, list) or not raw_pools:
        errors.append("pools: required: a list of pools (name, provider, tags, min, max, ...)")
        raw_pools = []
    pools = []
    for index, raw in enumerate(raw_pools):
        pool = _pool(raw, index, file.resolve().parent, errors)
        if pool is not None:
            pools.append(pool)
    names = [p.get("name") for p in raw_pools if isinstance(p, dict) and isinstance(p.get("name"), str)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"pools: the name {name!r} is used twice; pool names must be unique")
    if errors:
        raise ClusterConfigError(file, errors)
    return ClusterFile(
        path=file,
        pools=tuple(pools),
        master=master,
        interval=scaler.get("interval", ClusterFile.interval),
        max_events=scaler.get("max_events", ClusterFile.max_events),
    )
