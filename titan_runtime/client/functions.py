"""How a Python function task travels: its call, its result and its exception, as text.

A call is `(function, args, kwargs)` pickled with cloudpickle (lambdas and closures too) and
base64-encoded into `JobSpec.call`; a future among the arguments becomes a `Ref` to its job (a
parent of the new task), which the worker's warm process replaces with that job's result. What a
task returns is its job's result, a JSON envelope (so every tool that shows results shows it):

    {"titan.python": "<base64 pickle>"}             the value, up to INLINE_BYTES pickled
    {"titan.python.artifact": "NAME", "size": N}    a larger value, an artifact of the run
    {"titan.python.error": "<base64 pickle>" | "",  the exception it raised, with the traceback
     "type": "ValueError", "message": "...", "traceback": "..."}

Used by both ends: the client (calls out, results in) and the warm process (calls in, results out).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any

VALUE = "titan.python"
ARTIFACT = "titan.python.artifact"
ERROR = "titan.python.error"
#: A pickled value up to this size goes in the job's result (base64 and JSON keep it under the
#: 1 MB limit of results); a larger one is published as an artifact of the run.
INLINE_BYTES = 700 * 1024
#: Characters of a remote traceback kept (the whole one is in the job's log).
MAX_TRACEBACK = 64 * 1024


def _pickle() -> Any:
    import cloudpickle  # on first use: a client that runs no functions never loads it

    return cloudpickle


@dataclass(frozen=True)
class Ref:
    """An argument that is another task's result: replaced on the cluster by the value."""

    job_id: str


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a function task, as the task's process printed it:
    the `__cause__` of the exception raised again in the caller."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


class RemoteError(Exception):
    """A function task's exception that could not be pickled (or unpickled): its type and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


def encode_call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    _send_own_code(fn)
    return base64.b64encode(_pickle().dumps((fn, args, kwargs))).decode("ascii")


#: Packages a worker always has: their functions go by name, never by value.
_INSTALLED_WITH_TITAN = frozenset({"titan_runtime", "titan_dagster", "titan_airflow"})


def _send_own_code(fn: Any) -> None:
    """A function of the caller's own code (a module under the current directory or the script's,
    not installed) goes by value, with its module's other functions and classes, as `__main__`'s
    do: the workers have not got that code. A function of an installed package goes by name."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is None or module.__name__ == "__main__":
        return
    if module.__name__.partition(".")[0] in _INSTALLED_WITH_TITAN:
        return
    path = getattr(module, "__file__", None)
    if not path or "site-packages" in path or "dist-packages" in path:
        return
    path = os.path.realpath(path)
    roots = {os.path.realpath(os.getcwd())}
    if sys.path and sys.path[0]:
        roots.add(os.path.realpath(sys.path[0]))
    if any(path.startswith(root + os.sep) for root in roots):
        _pickle().register_pickle_by_value(module)


def decode_call(call: str) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    fn, args, kwargs = _pickle().loads(base64.b64decode(call))
    return fn, tuple(args), dict(kwargs)


def refs_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """The jobs whose results the call takes (top-level arguments only, as Ray does)."""
    return [a.job_id for a in (*args, *kwargs.values()) if isinstance(a, Ref)]


def resolve(
    args: tuple[Any, ...], kwargs: dict[str, Any], values: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments with each Ref replaced by its job's value."""

    def one(a: Any) -> Any:
        return values[a.job_id] if isinstance(a, Ref) else a

    return tuple(one(a) for a in args), {k: one(v) for k, v in kwargs.items()}


def run_chunk(fn: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[tuple[bool, Any]]:
    """A chunk of `map(..., chunksize=N)`, run on the worker: `fn` on each call, in order; each
    (True, value), or (False, the error envelope of what it raised), so one item's exception is
    its own future's, not the chunk's."""
    out: list[tuple[bool, Any]] = []
    for args, kwargs in calls:
        try:
            out.append((True, fn(*args, **kwargs)))
        except Exception as exc:
            if exc.__traceback__ is not None:  # from the function's frame, not this one
                exc = exc.with_traceback(exc.__traceback__.tb_next)
            out.append((False, error_envelope(exc)))
    return out


def value_envelope(pickled: bytes) -> str:
    return json.dumps({VALUE: base64.b64encode(pickled).decode("ascii")})


def artifact_envelope(name: str, size: int) -> str:
    return json.dumps({ARTIFACT: name, "size": size})


def error_envelope(exc: BaseException) -> str:
    """The exception, pickled if it can be, with its type, message and formatted traceback."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickled = base64.b64encode(_pickle().dumps(exc)).decode("ascii")
    except Exception:
        pickled = ""
    if len(pickled) > INLINE_BYTES:
        pickled = ""
    return json.dumps(
        {
            ERROR: pickled,
            "type": type(exc).__qualname__,
            "message": str(exc)[:2000],
            "traceback": text[-MAX_TRACEBACK:],
        }
    )


def is_envelope(result: Any) -> bool:
    return isinstance(result, dict) and bool({VALUE, ARTIFACT, ERROR} & result.keys())


def load_value(result: dict[str, Any]) -> Any:
    """The value of an inline envelope (artifacts are fetched by the caller of this)."""
    return _pickle().loads(base64.b64decode(result[VALUE]))


def exception_of(result: dict[str, Any]) -> BaseException:
    """The task's exception, to raise again: its own type when it could be unpickled (else a
    RemoteError), with the remote traceback as its cause."""
    exc: BaseException
    try:
        exc = _pickle().loads(base64.b64decode(result[ERROR])) if result[ERROR] else None  # type: ignore[assignment]
    except Exception:
        exc = None  # type: ignore[assignment]
    if not isinstance(exc, BaseException):
        exc = RemoteError(str(result.get("type", "Exception")), str(result.get("message", "")))
    exc.__cause__ = RemoteTraceback(str(result.get("traceback", "")))
    return exc


def describe(result: dict[str, Any]) -> str:
    """One line for people (the CLI and the dashboard show envelopes as this)."""
    if VALUE in result:
        return f"a Python value ({len(result[VALUE]) * 3 // 4:,} bytes pickled)"
    if ARTIFACT in result:
        return f"a Python value ({result.get('size', 0):,} bytes pickled) in artifact {result[ARTIFACT]}"
    return f"raised {result.get('type', 'an exception')}: {result.get('message', '')}"
