"""A warm Python process: runs function tasks of one run, one after another, until told to stop.

Started by the worker (worker/fnpool.py) as `python -u -m titan_runtime.worker.fn_main FD`, FD its
end of a stream socket. Each request is a frame (4-byte length, then a marshalled (call, inputs,
cwd, env)) with the task's stdin, stdout and stderr attached (SCM_RIGHTS); the answer, once the
task has ended and its output is closed, is a frame of JSON ["exit", code, rss] (JSON, not marshal:
the task's code runs in this process and could write anything on the socket, which the worker
reads). The worker closes its end to stop it, or kills it (a cancel, a timeout): it runs nothing
else in between.

A task sees what a job sees: its environment (TITAN_* included: `titan_runtime.task` works), its
workspace as cwd, its output in its log, its result in $TITAN_RESULT_FILE. What it leaves in the
interpreter (imports, caches, globals, threads) the next task of the run finds: that is what makes
it warm. Tasks of other runs never share a process (docs/python-tasks.md, "Isolation").
"""

from __future__ import annotations

import array
import json
import marshal
import os
import signal
import socket
import sys
import traceback
from typing import Any

from titan_runtime.client import functions

FDS = 3


def _read_exactly(sock: socket.socket, n: int, fds: array.array[int] | None = None) -> bytes:
    """`n` bytes (fewer only at EOF); file descriptors that arrive with them go into `fds`."""
    data = b""
    while len(data) < n:
        if fds is not None:
            chunk, ancdata, _, _ = sock.recvmsg(n - len(data), socket.CMSG_SPACE(FDS * fds.itemsize))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
        else:
            chunk = sock.recv(n - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def _send(sock: socket.socket, message: Any) -> None:
    body = json.dumps(message).encode()
    sock.sendall(len(body).to_bytes(4, "big") + body)


def _rss() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _input(text: str) -> Any:
    """A parent's value from its result: an envelope (a function task's), or plain JSON."""
    result = json.loads(text)
    if not functions.is_envelope(result):
        return result
    if functions.ARTIFACT in result:
        from titan_runtime import task

        path = task.get_artifact(result[functions.ARTIFACT], f".titan-input-{os.getpid()}")
        try:
            return functions._pickle().loads(path.read_bytes())
        finally:
            path.unlink(missing_ok=True)
    return functions.load_value(result)


def _result(value: Any) -> str:
    pickled = functions._pickle().dumps(value)
    if len(pickled) <= functions.INLINE_BYTES:
        return functions.value_envelope(pickled)
    from titan_runtime import task

    name = f"titan-fn/{os.environ.get('TITAN_JOB_ID', 'task')}/result"
    path = f".titan-result-{os.getpid()}"
    with open(path, "wb") as fh:
        fh.write(pickled)
    try:
        task.publish_artifact(name, path)
    finally:
        os.unlink(path)
    return functions.artifact_envelope(name, len(pickled))


def run(call: str, inputs: dict[str, str]) -> tuple[int, str]:
    """Run one call: (exit code, result envelope). The traceback of a failure goes to stderr."""
    try:
        fn, args, kwargs = functions.decode_call(call)
        wanted = functions.refs_in(args, kwargs)
        missing = [job for job in wanted if job not in inputs]
        if missing:
            raise RuntimeError(f"no result of {', '.join(missing)} to pass to this task")
        args, kwargs = functions.resolve(args, kwargs, {job: _input(inputs[job]) for job in wanted})
        return 0, _result(fn(*args, **kwargs))
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the task's too
        if exc.__traceback__ is not None and exc.__traceback__.tb_next is not None:
            exc = exc.with_traceback(exc.__traceback__.tb_next)  # from the task's frame, not this one
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        return 1, functions.error_envelope(exc)


def _clean_signals() -> None:
    """Start as a fresh interpreter would: a signal the worker's own parent left ignored or
    blocked (exec keeps both) must still stop a task, as a cancel's SIGTERM does."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGPIPE else signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def serve(sock: socket.socket) -> None:
    _clean_signals()
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    _send(sock, ("ready",))
    while True:
        fds: array.array[int] = array.array("i")
        header = _read_exactly(sock, 4, fds)
        if len(header) < 4:
            return  # the worker closed its end
        call, inputs, cwd, env = marshal.loads(_read_exactly(sock, int.from_bytes(header, "big")))
        os.environ.clear()
        os.environ.update(env)
        code, result = 1, ""
        try:
            os.chdir(cwd)
            for target, fd in enumerate(fds[:FDS]):
                os.dup2(fd, target)
            code, result = run(call, inputs)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            if result and env.get("TITAN_RESULT_FILE"):
                fd = os.open(
                    env["TITAN_RESULT_FILE"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600
                )
                with os.fdopen(fd, "w") as fh:
                    fh.write(result)
            for target in (0, 1, 2):  # the task's output ends here: its log reads EOF
                os.dup2(devnull, target)
            for fd in fds:
                os.close(fd)
            os.chdir("/")
        _send(sock, ("exit", code, _rss()))


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
    # Told to stop: at once, without waiting for threads or atexit handlers tasks left behind (the
    # worker waits for this process on its event loop).
    os._exit(0)
