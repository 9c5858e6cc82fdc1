"""Records and operations of secrets (`titan-runtime secret`): set, list, delete.

A value goes to the master in the request's body (over TLS beyond loopback), never as an argument
or in the environment of anything; nothing here ever reads one back: the master never sends one.
"""

from __future__ import annotations

from dataclasses import dataclass

from titan_runtime.client.instructions import Call, Op
from titan_runtime.client.records import Record
from titan_runtime.proto import titan_pb2 as pb


@dataclass
class SecretRecord(Record):
    name: str
    updated_at: float  # when it was last set (seconds since the epoch)


def set_secret(name: str, value: str | bytes) -> Op[None]:
    data = value.encode() if isinstance(value, str) else bytes(value)
    yield Call("SetSecret", pb.SecretValue(name=name, value=data))


def list_secrets() -> Op[list[SecretRecord]]:
    response = yield Call("ListSecrets", pb.Empty())
    return [SecretRecord(s.name, s.updated_at) for s in response.secrets]


def delete_secret(name: str) -> Op[None]:
    yield Call("DeleteSecret", pb.SecretRef(name=name))
