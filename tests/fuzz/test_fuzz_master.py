"""Hostile input through the real master: random job specs, DAG shapes, conditions and YAML.

The properties, for every example: the master process never stops; a refusal is INVALID_ARGUMENT
with a message (FAILED_PRECONDITION for an artifact hash that was never uploaded); and a restart
of the master after each batch (each test) restores the same state. Specs go in as raw protobuf
through the gRPC stub, past every check of the SDK, as an attacker's would.

About two minutes in all by default; `pytest tests/fuzz --fuzz-examples 5000` hunts longer.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.helpers import ProcessCluster, wait_until
from titan_runtime.client.pipeline import PipelineError, load_pipeline
from titan_runtime.proto import titan_pb2 as pb

# 4,000 submissions and a restart take one to two minutes on two cores; the suite's 180 s guard
# against a hang is too close for a loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REFUSALS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
NEVER = "fuzz-never"  # no worker has it: fuzzed jobs wait, so the state is the same after a restart
RUNNER = "fuzz-run"
DELAYED = re.compile(r"delayed (\S+)s after becoming ready")  # the reason of a job in its delay

# ---------------------------------------------------------------- strategies

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
weird = st.one_of(
    text,
    st.sampled_from(["", "a\n", "x" * 300, "../x", "a/b", "é", "\0", "-x", ".", "GENERAL", "r-1/j"]),
)
ids = st.one_of(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,12}", fullmatch=True), weird)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.001, 1.0, -1.0, 1e300, 3.2e8]),
)
int32 = st.integers(-(2**31), 2**31 - 1)
counts = st.one_of(st.integers(-2, 6), int32)
hashes = st.one_of(
    st.just(""),
    weird,
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)

ATOMS = [
    "1", "0", "-3", "2.5", "'a'", "''", "true", "false", "null", "None", "p", "q", "p.x", "p['k']",
    "results", "results['p']", "len(p)", "[1, 2]", "{'a': 1}", "100000000000000000000", "unknown", "p.items",
]  # fmt: skip
OPS = [
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "==",
    "!=",
    "<",
    ">",
    "<=",
    ">=",
    "in",
    "not in",
    "and",
    "or",
    "is",
]
FUNCTIONS = [
    "len",
    "min",
    "max",
    "abs",
    "any",
    "all",
    "sum",
    "str",
    "int",
    "float",
    "bool",
    "open",
    "__import__",
]
expressions = (
    st.recursive(
        st.sampled_from(ATOMS) | st.integers().map(str) | text.map(repr),
        lambda e: st.one_of(
            st.tuples(e, st.sampled_from(OPS), e).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            e.map(lambda x: f"not {x}"),
            e.map(lambda x: f"-{x}"),
            st.tuples(st.sampled_from(FUNCTIONS), e).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(e, e, e).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            st.tuples(e, e).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(e, e).map(lambda t: f"[{t[0]}, {t[1]}]"),
            e.map(lambda x: f"[v for v in {x}]"),
            e.map(lambda x: f"{x}.__class__"),
        ),
        max_leaves=25,
    )
    | weird
)


HOSTILE_FIELDS = (
    "id", "kind", "program", "args", "env", "tags", "priority", "timeout", "delay", "parents", "retries",
    "affinity", "labels", "slots", "memory", "cpus", "gpus", "service", "trigger_rule", "when", "branch",
    "map_over", "internal", "approval",
)  # fmt: skip
valid_ids = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,12}", fullmatch=True)


@st.composite
def job_specs(draw: Any, job_id: str | None = None, parents: tuple[str, ...] = ()) -> pb.JobSpec:
    """A JobSpec with none, one or two hostile fields and the rest valid: each example goes deep
    into the master with what is wrong in it, instead of being refused at its first field."""
    hostile = set(draw(st.lists(st.sampled_from(HOSTILE_FIELDS), max_size=2)))

    def pick(field: str, valid: Any, bad: Any) -> Any:
        return draw(bad if field in hostile else valid)

    spec = pb.JobSpec(id=job_id if job_id is not None else pick("id", valid_ids, ids))
    spec.kind = pick("kind", st.sampled_from(["", "batch"]), st.sampled_from(["service", "other", "BATCH"]))
    if "program" in hostile:
        spec.command.extend(draw(st.lists(weird, max_size=3)))
        spec.script_name, spec.script_hash = draw(weird), draw(hashes)
        spec.project_hash = draw(hashes)
    else:
        spec.command.append("true")
    spec.args.extend(pick("args", st.lists(valid_ids, max_size=2), st.lists(weird, max_size=3)))
    spec.env.update(
        pick(
            "env",
            st.dictionaries(valid_ids, valid_ids, max_size=2),
            st.dictionaries(weird, weird, max_size=3),
        )
    )
    spec.tags.extend([*pick("tags", st.just([]), st.lists(weird, max_size=2)), NEVER])
    spec.priority = pick("priority", st.integers(-5, 20), int32)
    spec.timeout = pick("timeout", st.sampled_from([0.0, 30.0]), numbers)
    spec.delay = pick("delay", st.sampled_from([0.0, 0.5]), numbers)
    spec.parents.extend(parents if "parents" not in hostile else draw(st.lists(ids, max_size=3)))
    if "retries" in hostile:
        spec.retries.attempts = draw(counts)
        spec.retries.backoff_initial = draw(numbers)
        spec.retries.backoff_factor = draw(numbers)
        spec.retries.max_lost = draw(counts)
        spec.retries.fallback.add().tags.extend(draw(st.lists(weird, max_size=2)))
    spec.affinity = pick("affinity", st.just(""), st.sampled_from(["soft", "hard", "other"]))
    spec.labels.update(pick("labels", st.just({}), st.dictionaries(weird, weird, max_size=3)))
    spec.slots = pick("slots", st.integers(0, 4), counts)
    spec.memory_mb = pick("memory", st.just(0), counts)
    spec.cpus = pick("cpus", st.just(0.0), numbers)
    spec.gpus = pick("gpus", st.just(0), counts)
    if "service" in hostile:
        spec.kind = "service"
        spec.port, spec.replicas = draw(counts), draw(counts)
        spec.ports.extend(draw(st.lists(weird, max_size=2)))
        spec.health.interval = draw(numbers)
        spec.restart.attempts = draw(counts)
        spec.restart.window = draw(numbers)
    spec.trigger_rule = pick(
        "trigger_rule", st.sampled_from(["", "all_success", "all_done", "one_success"]), weird
    )
    if spec.parents:
        spec.when = pick("when", st.sampled_from(["", "true"]), expressions)
        spec.map_over = pick("map_over", st.just(""), st.sampled_from([*spec.parents, "ghost"]))
    spec.branch = pick("branch", st.just(False), st.booleans())
    if "internal" in hostile:  # fields the master sets, never a client
        spec.map_of = draw(st.sampled_from(["ghost", *spec.parents]))
        spec.iteration, spec.map_index, spec.service = draw(int32), draw(int32), draw(weird)
    if "approval" in hostile:
        spec.approval.required = True
        spec.approval.message = draw(weird)
        spec.approval.timeout = draw(numbers)
    spec.allow_failure = draw(st.booleans())
    return spec


@st.composite
def runs(draw: Any) -> list[pb.JobSpec]:
    count = draw(st.integers(1, 6))
    chosen = draw(st.lists(ids, min_size=count, max_size=count))
    specs = []
    for n, job_id in enumerate(chosen):
        earlier = tuple(draw(st.lists(st.sampled_from(chosen[:n]), max_size=2, unique=True))) if n else ()
        specs.append(draw(job_specs(job_id, earlier)))
    return specs


@st.composite
def dag_shapes(draw: Any) -> tuple[list[pb.JobSpec], bool]:
    """(jobs, has a cycle): deep chains, wide fan-ins, random DAGs, some closed into a cycle."""
    n = draw(st.integers(2, 1500))
    shape = draw(st.sampled_from(["chain", "fan-in", "random"]))
    rnd = draw(st.randoms(use_true_random=False))
    parents: list[list[str]] = []
    for i in range(n):
        if shape == "chain":
            parents.append([f"j{i - 1}"] if i else [])
        elif shape == "fan-in":
            parents.append([f"j{k}" for k in range(n - 1)] if i == n - 1 else [])
        else:
            parents.append(sorted({f"j{rnd.randrange(i)}" for _ in range(rnd.randint(0, 3))}) if i else [])
    cycle = draw(st.booleans())
    if cycle:  # j0 comes to depend on a job that depends on j0, so there is a cycle through it
        reaches = [i == 0 for i in range(n)]
        for i in range(1, n):
            reaches[i] = any(reaches[int(p[1:])] for p in parents[i])
        closing = [i for i in range(1, n) if reaches[i]]
        if not closing:
            parents[1].append("j0")
            closing = [1]
        parents[0].append(f"j{rnd.choice(closing)}")
    jobs = [pb.JobSpec(id=f"j{i}", command=["true"], tags=[NEVER], parents=p) for i, p in enumerate(parents)]
    return jobs, cycle


pipeline_keys = st.sampled_from(
    ["name", "jobs", "project", "labels", "id", "file", "depends_on", "type", "args", "env", "priority",
     "delay", "requirement", "retries", "when", "trigger_rule", "port", "replicas", "x"]
)  # fmt: skip
yaml_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | weird,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(pipeline_keys | text, inner, max_size=6),
    max_leaves=30,
)

# ---------------------------------------------------------------- checks


def budget(request: pytest.FixtureRequest, default: int, most: int = 0) -> settings:
    """The default run is fixed (derandomised) and reports a failure as found; a long hunt
    (--fuzz-examples N) explores anew each time and shrinks what it finds."""
    hunting = request.config.getoption("--fuzz-examples") > 0
    return settings(
        max_examples=min(request.config.getoption("--fuzz-examples") or default, most or 10**9),
        deadline=None,
        derandomize=not hunting,
        phases=list(Phase) if hunting else [Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )


def submit(cluster: ProcessCluster, jobs: list[pb.JobSpec]) -> pb.SubmitRunResponse | None:
    """The raw RPC; None when refused, which must be a refusal we mean, with a message."""
    client = cluster.client
    request = pb.SubmitRunRequest(name="fuzz", jobs=jobs)
    try:
        return client._rpc("SubmitRun")[0](request, metadata=client._metadata, timeout=120)
    except grpc.RpcError as exc:
        assert exc.code() in REFUSALS, (exc.code(), exc.details(), jobs[:3])
        assert exc.details(), exc.code()
        if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
            assert "never uploaded" in exc.details(), exc.details()
        return None
    finally:
        assert cluster.master is not None and cluster.master.poll() is None, cluster.master_log()[-3000:]


def state_of(cluster: ProcessCluster) -> dict[str, Any]:
    """What a restart must give back: each run and its jobs' states and attempts."""
    client = cluster.client
    out = {}
    for run in client.list_runs(0):
        record = client.get_run(run.id)
        jobs = sorted(
            (j.id, j.state, j.reason if j.terminal else "", j.attempt, j.has_result, j.exit_code)
            for j in record.jobs
        )
        out[run.id] = (record.state, record.reason, jobs)
    return out


def delays_running_out_soon(cluster: ProcessCluster) -> int:
    """Jobs whose short delay is running: one that runs out during the restart changes state."""
    client = cluster.client
    return sum(
        1
        for run in client.list_runs(0)
        for job in client.get_run(run.id).jobs
        if job.state == "PENDING" and (delay := DELAYED.match(job.reason)) and float(delay[1]) <= 10
    )


def restart_restores_the_state(cluster: ProcessCluster) -> None:
    wait_until(lambda: not delays_running_out_soon(cluster), timeout=30, what="short delays to run out")
    before = state_of(cluster)
    cluster.restart_master()
    cluster._client = None
    assert state_of(cluster) == before


@pytest.fixture
def fuzz_cluster(make_cluster) -> ProcessCluster:  # type: ignore[no-untyped-def]
    # A lower job limit: a hostile replica count is refused past 2,000 (the DAG shapes go to 1,500)
    # instead of building up to 100,000 waiting jobs that every later example, and the restart, carry.
    cluster: ProcessCluster = make_cluster(master_args=("--limit", "jobs_per_run=2000"))
    cluster.add_worker("runner", tags=(RUNNER,), slots=4)
    return cluster


# ---------------------------------------------------------------- properties


def test_random_specs_never_stop_the_master(
    fuzz_cluster: ProcessCluster, request: pytest.FixtureRequest
) -> None:
    accepted = []

    @budget(request, 4000)
    @given(runs())
    def property(jobs: list[pb.JobSpec]) -> None:
        response = submit(fuzz_cluster, jobs)
        if response is not None:
            accepted.append(response.run_id)

    property()
    assert accepted, "no spec at all was accepted: the strategy stays too far from valid ones"
    restart_restores_the_state(fuzz_cluster)


def test_dag_shapes_are_accepted_or_refused_for_their_cycle(
    fuzz_cluster: ProcessCluster, request: pytest.FixtureRequest
) -> None:
    @budget(request, 120, most=300)  # a long hunt here stores a million jobs: the restart is no test
    @given(dag_shapes())
    def property(shape: tuple[list[pb.JobSpec], bool]) -> None:
        jobs, cycle = shape
        client = fuzz_cluster.client
        try:
            client._rpc("SubmitRun")[0](
                pb.SubmitRunRequest(name="dag", jobs=jobs), metadata=client._metadata, timeout=120
            )
            assert not cycle, "a cycle was accepted"
        except grpc.RpcError as exc:
            assert cycle and exc.code() is grpc.StatusCode.INVALID_ARGUMENT and "cycle" in exc.details()

    property()
    restart_restores_the_state(fuzz_cluster)


def test_conditions_on_real_results_fail_only_their_job(
    fuzz_cluster: ProcessCluster, request: pytest.FixtureRequest
) -> None:
    """A parent that runs and commits a random JSON result; a child whose random condition reads it."""
    client = fuzz_cluster.client

    @budget(request, 200)
    @given(json_values, expressions)
    def property(result: Any, when: str) -> None:
        parent = pb.JobSpec(
            id="p",
            command=["sh", "-c", 'printf %s "$R" > "$TITAN_RESULT_FILE"'],
            env={"R": json.dumps(result)},
            tags=[RUNNER],
        )
        child = pb.JobSpec(id="c", command=["true"], tags=[RUNNER], parents=["p"], when=when)
        response = submit(fuzz_cluster, [parent, child])
        if response is None:
            return
        record = client.wait_run(response.run_id, 60)
        states = {j.id: j for j in record.jobs}
        assert states["p"].state == "SUCCEEDED", states["p"].reason
        c = states["c"]
        assert c.state in ("SUCCEEDED", "SKIPPED", "FAILED"), c
        if c.state == "FAILED":
            assert c.reason.startswith("condition"), c.reason

    property()
    restart_restores_the_state(fuzz_cluster)


def test_random_yaml_is_a_pipeline_or_a_list_of_errors(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = tmp_path / "pipeline.yaml"
    (tmp_path / "step.py").write_text("print('hi')\n")

    @budget(request, 3000)
    @given(
        st.one_of(
            yaml_documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
            st.text(alphabet=string.printable, max_size=400),
            st.builds(
                lambda jobs: yaml.safe_dump({"name": "p", "jobs": jobs}),
                st.lists(
                    st.fixed_dictionaries(
                        {"id": ids, "file": st.sampled_from(["step.py", "nope.py", "../x"])},
                        optional={
                            "depends_on": st.lists(ids, max_size=2),
                            "when": expressions,
                            "env": st.dictionaries(text, weird, max_size=2),
                        },
                    ),
                    max_size=5,
                ),
            ),
        )
    )
    def property(document: str) -> None:
        path.write_text(document, encoding="utf-8")
        try:
            load_pipeline(path)
        except PipelineError as exc:
            assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)

    property()
