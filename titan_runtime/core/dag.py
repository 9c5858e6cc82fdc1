"""Graph checks shared by every way a DAG enters Titan (YAML, SDK, jobs extending their run)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from titan_runtime.core.model import InvalidSpec


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return one cycle as a closed path ([a, b, a]) in the child -> parents mapping, or None.

    Iterative depth-first search so a 10,000-job chain does not hit the recursion limit.
    Parents missing from `edges` are treated as already-checked nodes (existing jobs).
    """
    white, grey, black = 0, 1, 2
    color: dict[str, int] = dict.fromkeys(edges, white)
    for start in edges:
        if color[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        color[start] = grey
        while stack:
            node, index = stack[-1]
            parents = edges[node]
            if index < len(parents):
                stack[-1] = (node, index + 1)
                parent = parents[index]
                state = color.get(parent, black)
                if state == grey:
                    return [*path[path.index(parent) :], parent]
                if state == white:
                    color[parent] = grey
                    stack.append((parent, 0))
                    path.append(parent)
            else:
                color[node] = black
                stack.pop()
                path.pop()
    return None


def check_graph(new: Mapping[str, Sequence[str]], existing: Iterable[str] = ()) -> None:
    """Validate the parent links of `new` jobs (id -> parents) against themselves and `existing` ids.

    Raises InvalidSpec naming the unknown dependency or the jobs that form a cycle.
    """
    known = set(existing)
    for job_id in new:
        if job_id in known:
            raise InvalidSpec(f"duplicate job id {job_id!r}: job ids must be unique within a run")
    for job_id, parents in new.items():
        for parent in parents:
            if parent not in new and parent not in known:
                raise InvalidSpec(f"job {job_id!r} depends on unknown job {parent!r}")
    cycle = find_cycle({job_id: [p for p in parents if p in new] for job_id, parents in new.items()})
    if cycle:
        # The edges point child -> parent; show the cycle in execution order (its ends, if long).
        path = list(reversed(cycle))
        if len(path) > 12:
            path = [*path[:5], f"... ({len(path) - 10} more)", *path[-5:]]
        raise InvalidSpec("dependency cycle: " + " -> ".join(path))
