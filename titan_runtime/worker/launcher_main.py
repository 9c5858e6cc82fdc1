"""The Python launcher: an interpreter that has already started, forking a copy per Python job.

Run by the worker as `python -u launcher_main.py FD [MODULE...]` (never imported): FD is its end of
a SOCK_SEQPACKET socket pair; each MODULE is imported before any job is forked (`--preload`: a
`python -m` job of such a package starts with it imported), and the first message says which
could not be, ("preloaded", [(module, why)...]). Starting an interpreter costs ~17 ms of CPU, most of a no-op job; a fork
of one that has started costs ~1 ms. Each request is a marshalled (argv, cwd, env) with the job's
stdin, stdout and stderr attached (SCM_RIGHTS); the answer is ("pid", pid) once the child leads its
own session, or ("error", why). When a child exits, the launcher SIGKILLs what is left of its
group (the leader is a zombie until reaped, so the group id cannot have been reused), reaps it and
sends ("exit", pid, wait status). It leaves when the worker closes its end, killing the groups of
the children it still has (the worker stops its jobs first; this is for a worker that could not).

The child then becomes what `python -u SCRIPT ARGS` (or `python -u -m MODULE ARGS`, `-u` optional:
the worker's jobs run with PYTHONUNBUFFERED=1) would be: its own session, the job's fds, cwd,
environment, argv and sys.path[0], the default SIGINT handler, the script (the module, through
runpy as `-m` does) as a fresh `__main__`, and the interpreter's own handling of SystemExit,
uncaught exceptions, threads and atexit. What differs is
listed in docs/concepts.md (the hash seed is the launcher's; a few modules are already imported).

It imports only modules the interpreter has loaded at start-up or that are built in, so that a job
finds `sys.modules` much as a fresh interpreter leaves it.
"""

import _socket
import array
import marshal
import os
import select
import signal
import sys

MAX_REQUEST = 256 * 1024
FDS = 3  # stdin, stdout, stderr


def _spawn(cwd, fds, inherited):
    """Fork a child for one job; in the parent return its pid, in the child return None.

    `inherited` is every other fd the launcher holds (its socket, its children's pidfds): the child
    closes them, and the ones it was sent once they are its 0, 1 and 2."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in {*fds, *inherited, ready_r, ready_w}:
                os.close(fd)
            os.chdir(cwd)
        except BaseException as exc:  # the child must never return into the loop
            os.write(2, f"titan: cannot start the job: {exc}\n".encode())
            os._exit(127)
        return None
    os.close(ready_w)
    os.read(ready_r, 1)  # EOF once the child has its own session and closed everything else
    os.close(ready_r)
    return pid


def _end(pid):
    """SIGKILL what is left of a child's group and reap it; its wait status."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    return os.waitpid(pid, 0)[1]


def serve(sock_fd, preload_failed):
    """Answer requests until the worker closes the socket. Returns (argv, env) in a forked child."""
    sock = _socket.socket(fileno=sock_fd)
    sock.send(marshal.dumps(("preloaded", preload_failed)))
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    children = {}  # pidfd -> pid
    while True:
        for fd, _ in poller.poll():
            if fd != sock_fd:
                pid = children.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                sock.send(marshal.dumps(("exit", pid, _end(pid))))
                continue
            fds = array.array("i")
            data, ancdata, _, _ = sock.recvmsg(MAX_REQUEST, _socket.CMSG_SPACE(FDS * fds.itemsize))
            for level, kind, payload in ancdata:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            if not data:  # the worker closed its end: nothing it started may outlive that
                for pid in children.values():
                    _end(pid)
                return None
            try:
                argv, cwd, env, title = marshal.loads(data)
                if len(fds) != FDS:
                    raise ValueError(f"expected {FDS} file descriptors, got {len(fds)}")
                pid = _spawn(cwd, fds, [sock_fd, *children])
                if pid is None:
                    sock.detach()
                    return argv, env, title
                pidfd = os.pidfd_open(pid)
                children[pidfd] = pid
                poller.register(pidfd, select.POLLIN)
                answer = ("pid", pid)
            except Exception as exc:  # the worker runs the job without the launcher
                answer = ("error", f"{type(exc).__name__}: {exc}")
            for fd in fds:
                os.close(fd)
            sock.send(marshal.dumps(answer))


def _trimmed_excepthook(first):
    """Tracebacks start where Python's own would (the script's frame, or runpy's for `-m`, for which
    `first(code)` is true): the launcher's frame is cut."""

    def hook(kind, value, tb):
        while tb is not None and not first(tb.tb_frame.f_code):
            tb = tb.tb_next
        sys.__excepthook__(kind, value.with_traceback(tb), tb)

    return hook


def _preload(modules):
    """Import each of `modules`; the ones that failed, with why (a job never sees these errors: its
    own import says them again, in its log). They are looked for where an interpreter started in
    "/" looks, not in the launcher's own folder (sys.path[0]): a name that a job asks for must not
    import one of the worker's modules."""
    failed = []
    own = sys.path.pop(0)
    try:
        for name in modules:
            try:
                __import__(name)
            except BaseException as exc:  # an import may raise anything, SystemExit too
                failed.append((name, f"{type(exc).__name__}: {exc}"[:500]))
    finally:
        sys.path.insert(0, own)  # a forked job's own sys.path[0] replaces it
    return failed


def _run_job(run, fast):
    """Run the job (`run()`). The interpreter ends it as it ends any program, unless `fast`
    (TITAN_FAST_EXIT=1): then it leaves as a forked multiprocessing child does, non-daemon threads
    joined and atexit handlers run as the interpreter would, standard streams flushed, and no
    teardown of modules (with Dagster imported that takes 0.2-0.4 s). Only a normal end or a
    SystemExit leaves that way: any other exception goes the interpreter's way."""
    if not fast:
        run()
        return
    try:
        run()
        code = 0
    except SystemExit as exc:
        code = exc.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)  # as Python says a SystemExit("message")
            code = 1
    threading = sys.modules.get("threading")  # no threads were started without it
    if threading is not None:
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit((code or 0) & 0xFF)


def _title_spec():
    """Where setproctitle's C module is, found without importing its package, which would bring
    logging, threading and more into every job's sys.modules; None if it is not installed."""
    finder = sys.modules["_frozen_importlib_external"].PathFinder
    try:
        package = finder.find_spec("setproctitle")
        if package is None or not package.submodule_search_locations:
            return None
        return finder.find_spec("setproctitle._setproctitle", package.submodule_search_locations)
    except Exception:
        return None


def _undumpable():
    """PR_SET_DUMPABLE 0, as the worker does (worker/hardening.py): the launcher holds every forked
    job's environment for a while, and its forked jobs inherit the flag. ctypes is imported for
    this one call and taken out of sys.modules again."""
    before = set(sys.modules)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except Exception:
        pass
    for name in set(sys.modules) - before:
        del sys.modules[name]


_undumpable()
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, signal.SIG_IGN)  # the worker stops it by closing the socket
_TITLE_SPEC = _title_spec()
_PRELOAD_FAILED = _preload(sys.argv[2:])
_job = serve(int(sys.argv[1]), _PRELOAD_FAILED)
if _job is None:
    sys.exit(0)

# A forked child: become the job.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
_argv, _env, _title = _job
if _title and _TITLE_SPEC is not None:  # `ps` and `top` name the job, not the launcher
    try:
        _module = sys.modules["_frozen_importlib"].module_from_spec(_TITLE_SPEC)
        _TITLE_SPEC.loader.exec_module(_module)
        _module.setproctitle(_title)
        del _module
    except Exception:
        pass
os.environ.clear()
os.environ.update(_env)
if "TZ" in _env:
    import time

    time.tzset()
sys.orig_argv[:] = _argv
_fast = _env.get("TITAN_FAST_EXIT") == "1"  # warm Dagster steps ask for it
_rest = _argv[2:] if _argv[1:2] == ["-u"] else _argv[1:]
_main = type(sys)("__main__")
_main.__builtins__ = __builtins__
if _rest[0] == "-m":  # as `python -m`: cwd first on the path, the module found and run by runpy
    import runpy

    _module_name = _rest[1]
    sys.argv[:] = ["-m", *_rest[2:]]  # runpy puts the module's file in argv[0]
    sys.path[0] = os.getcwd()
    sys.excepthook = _trimmed_excepthook(lambda code: code.co_name == "_run_module_as_main")
    sys.modules["__main__"] = _main  # runpy runs the module in __main__'s namespace: a fresh one
    del _job, _argv, _env, _title, _sig, _TITLE_SPEC, _PRELOAD_FAILED, _rest
    _run_job(lambda: runpy._run_module_as_main(_module_name, alter_argv=True), _fast)
else:
    _script = os.path.abspath(_rest[0])  # as Python makes it (argv[0] stays as given)
    sys.argv[:] = _rest
    sys.path[0] = os.path.dirname(os.path.realpath(_script))
    sys.excepthook = _trimmed_excepthook(lambda code, script=_script: code.co_filename == script)
    _main.__file__ = _script
    _main.__cached__ = None
    _main.__loader__ = sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", _script)
    with open(_script, "rb") as _fh:
        _code = compile(_fh.read(), _script, "exec")
    sys.modules["__main__"] = _main
    del _job, _argv, _env, _title, _fh, _sig, _TITLE_SPEC, _PRELOAD_FAILED, _rest
    _run_job(lambda: exec(_code, _main.__dict__), _fast)
