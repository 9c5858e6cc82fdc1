"""The by-name mapping between messages and records: no field is dropped on either side.

Each record class here is filled from a message whose every field is set to a value unlike its
default, and each message from core records, so a field added to the proto without its
namesake in the record (or a record field renamed away from the wire) fails here, not in a
user's output.
"""

from __future__ import annotations

import dataclasses

import pytest

from titan_runtime.client.audit import AuditRecord
from titan_runtime.client.autoscaler import PoolRecord, ScaleEventRecord
from titan_runtime.client.records import (
    AttemptRecord,
    JobRecord,
    RunRecord,
    ScheduleRecord,
    ServiceRecord,
    WorkerRecord,
)
from titan_runtime.client.tokens import TokenRecord
from titan_runtime.core.model import Attempt, AttemptState, Worker, WorkerState
from titan_runtime.master.convert import attempt_to_pb, worker_to_pb
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import from_message, to_message


def _filled(message: type) -> object:
    """A message with every scalar, repeated scalar and map field set to something not a default."""

    def one(field: object, i: int) -> object:
        if field.name.endswith("_json"):
            return '{"set": true}'
        return {
            field.TYPE_STRING: f"s{i}",
            field.TYPE_BOOL: True,
            field.TYPE_DOUBLE: i + 0.5,
            field.TYPE_FLOAT: i + 0.5,
        }.get(field.type, i)

    values: dict[str, object] = {}
    for i, field in enumerate(message.DESCRIPTOR.fields, start=1):
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            values[field.name] = {f"k{i}": one(entry.fields_by_name["value"], i)}
        elif entry is None:
            values[field.name] = [one(field, i)] * 2 if field.is_repeated else one(field, i)
    return message(**values)


RECORDS = [
    (AttemptRecord, pb.AttemptInfo),
    (JobRecord, pb.JobInfo),
    (RunRecord, pb.RunInfo),
    (WorkerRecord, pb.WorkerInfo),
    (ServiceRecord, pb.ServiceInfo),
    (ScheduleRecord, pb.Schedule),
    (PoolRecord, pb.PoolStatus),
    (ScaleEventRecord, pb.AutoscalerEvent),
    (TokenRecord, pb.TokenInfo),
    (AuditRecord, pb.AuditEntry),
]


@pytest.mark.parametrize(("record", "message"), RECORDS, ids=lambda x: x.__name__)
def test_every_field_of_a_record_comes_from_the_wire(record: type, message: type) -> None:
    msg = _filled(message)
    got = record.from_pb(msg)
    for field in dataclasses.fields(record):
        value = getattr(got, field.name)
        if field.name in message.DESCRIPTOR.fields_by_name:
            wire = getattr(msg, field.name)
            if field.name == "kind" or field.name.endswith("_json"):
                continue
            if message.DESCRIPTOR.fields_by_name[field.name].message_type is None:
                expected = list(wire) if isinstance(value, list) else wire
                assert value == expected, field.name
            elif isinstance(value, dict):
                assert value == dict(wire), field.name


def test_an_unset_optional_reads_as_none_and_a_set_zero_as_zero() -> None:
    assert AttemptRecord.from_pb(pb.AttemptInfo(id="a")).exit_code is None
    assert AttemptRecord.from_pb(pb.AttemptInfo(id="a", exit_code=0)).exit_code == 0


def test_containers_follow_the_declared_type() -> None:
    @dataclasses.dataclass
    class Held:
        tags: frozenset[str] = frozenset()
        gpus: tuple[str, ...] = ()
        args: list[str] = dataclasses.field(default_factory=list)

    got = from_message(Held, pb.WorkerHello(tags=["a", "b"], gpus=["0"]), args=["x"])
    assert got == Held(frozenset({"a", "b"}), ("0",), ["x"])


def _unmapped(message: type, msg: object, computed: set[str]) -> list[str]:
    """Fields of the message left at their defaults that no source or argument set."""
    return [
        f.name
        for f in message.DESCRIPTOR.fields
        if f.name not in computed
        and not (f.is_repeated or f.message_type)
        and not (f.has_presence and msg.HasField(f.name))
        and getattr(msg, f.name) == f.default_value
    ]


def test_core_records_fill_every_field_of_their_message() -> None:
    attempt = Attempt(
        id="a", run_id="r", job_id="j", number=2, worker_id="w", state=AttemptState.RUNNING,
        assigned_at=1.0, started_at=2.0, ended_at=3.0, exit_code=4, signal="SIGTERM", reason="why",
        pid=5, log_size=6, host="h", ports={"http": 7}, healthy=True,
    )  # fmt: skip
    info = attempt_to_pb(attempt)
    assert info.state == "RUNNING" and info.ports == {"http": 7}
    assert _unmapped(pb.AttemptInfo, info, set()) == []

    worker = Worker(
        id="w", name="n", host="h", pid=1, tags=frozenset({"b", "a"}), slots=2, cpu_count=3,
        memory_bytes=4, gpus=("0",), version="v", state=WorkerState.DRAINING, registered_at=5.0,
        last_heartbeat=6.0, cpu_percent=7.0, memory_percent=8.0, pool="p", provider="local", launch_id="l",
        memory_enforcement="rlimit", used_millicpus=1500, used_memory_mb=9, gpu_holders={"0": "x"},
    )  # fmt: skip
    worker.attempts = {"x"}
    info = worker_to_pb(worker)
    assert info.cpus_used == 1.5 and info.memory_used_mb == 9 and list(info.gpus_used) == ["0"]
    assert list(info.tags) == ["a", "b"] and info.state == "DRAINING" and info.running == 1
    assert _unmapped(pb.WorkerInfo, info, set()) == []


def test_given_values_override_and_later_sources_fill_in() -> None:
    @dataclasses.dataclass
    class A:
        name: str = "from-a"

    @dataclasses.dataclass
    class B:
        name: str = "from-b"
        note: str = "note-b"

    assert to_message(pb.PoolStatus, A(), B()) == pb.PoolStatus(name="from-a", note="note-b")
    assert to_message(pb.PoolStatus, A(), B(), name="given").name == "given"


def test_an_unset_field_reads_as_the_wire_default_where_the_record_default_differs() -> None:
    """Only the fields a message has set are read (ListFields); the others must come out as
    reading them would give, not as the dataclass's own default."""

    @dataclasses.dataclass
    class Spec:
        id: str
        priority: int = 1  # the wire's default is 0
        timeout: float = 5.0
        tags: tuple[str, ...] = ("x",)
        env: dict[str, str] = dataclasses.field(default_factory=dict)

    got = from_message(Spec, pb.JobSpec(id="j"))
    assert got == Spec("j", priority=0, timeout=0.0, tags=(), env={})
    assert type(got.timeout) is float
    assert from_message(Spec, pb.JobSpec(id="j", priority=3)).priority == 3


def test_a_required_list_unset_on_the_wire_is_a_new_list_for_every_record() -> None:
    first, second = (WorkerRecord.from_pb(pb.WorkerInfo(id=f"w{i}")) for i in range(2))
    assert first.tags == [] and second.tags == []
    first.tags.append("mutated")
    assert second.tags == [] and WorkerRecord.from_pb(pb.WorkerInfo(id="w3")).tags == []


def test_the_clients_method_callables_are_the_generated_stubs() -> None:
    """The client makes each method's callable from the service descriptor (not through the
    generated stub, whose import costs more than a short command): same kind, same path."""
    import grpc

    from titan_runtime.client.drivers import method_callable
    from titan_runtime.proto import titan_pb2_grpc

    channel = grpc.insecure_channel("127.0.0.1:1")  # never dialled: nothing is called
    try:
        stub = titan_pb2_grpc.TitanStub(channel)
        names = [m.name for m in pb.DESCRIPTOR.services_by_name["Titan"].methods]
        assert len(names) > 40
        for name in names:
            ours, theirs = method_callable(channel, name), getattr(stub, name)
            assert type(ours) is type(theirs), name
            assert ours._method == theirs._method, name
    finally:
        channel.close()
