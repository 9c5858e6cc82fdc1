"""The KV keys Titan keeps for itself, named in one place: what the API writes, retention deletes."""

from __future__ import annotations

#: KV keys Titan keeps for itself (artifact names, usage counters); users get a clear refusal.
RESERVED_PREFIX = "titan/"
#: Artifact names: ARTIFACT_PREFIX + (a run id, or "_" for the cluster's) + "/" + the name.
ARTIFACT_PREFIX = RESERVED_PREFIX + "artifact/"
USAGE_PREFIX = RESERVED_PREFIX + "usage/"


def artifact_key(run_id: str, name: str) -> str:
    return f"{ARTIFACT_PREFIX}{run_id or '_'}/{name}"


def usage_key(run_id: str, what: str) -> str:
    return f"{USAGE_PREFIX}{run_id}/{what}"


def run_key_prefixes(run_ids: list[str]) -> list[str]:
    """Where each run's own keys are, besides those its jobs created: they go with the run."""
    return [f"{prefix}{run_id}/" for run_id in run_ids for prefix in (ARTIFACT_PREFIX, USAGE_PREFIX)]
