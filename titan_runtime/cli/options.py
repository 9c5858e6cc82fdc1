"""What every command shares: options, error handling, logging, exit codes."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click

from titan_runtime import config
from titan_runtime.client.errors import TitanError
from titan_runtime.client.sync import TitanClient
from titan_runtime.core.names import TAG_PATTERN

F = TypeVar("F", bound=Callable[..., Any])

EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130


def fail(message: str, code: int = 1) -> None:
    click.echo(f"titan-runtime: error: {message}", err=True)
    sys.exit(code)


def _said_in_one_line() -> tuple[type[Exception], ...]:
    """The errors whose message is all a user needs. The store's only when the command loaded the
    store: a client command would spend more importing it than on its own work, and cannot raise it."""
    from titan_runtime.tls import TlsError

    store = sys.modules.get("titan_runtime.store.base")
    return (TitanError, config.ConfigError, TlsError, *((store.StoreError,) if store else ()))


def friendly_errors(fn: F) -> F:
    """Turn SDK, configuration, store and system errors (a full disk) into one line on stderr and
    exit code 1; a reader that went away (`logs | head`) ends the command quietly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if isinstance(exc, _said_in_one_line()):
                    fail(str(exc))
                raise
        except TimeoutError as exc:
            fail(str(exc), EXIT_TIMEOUT)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush to
            sys.exit(1)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}")
        except KeyboardInterrupt:
            sys.exit(EXIT_CANCELLED)

    return wrapper  # type: ignore[return-value]


def reconnect_option(fn: F) -> F:
    """--reconnect-timeout, for the commands that wait on the master (put it above @client_options)."""
    return click.option(
        "--reconnect-timeout",
        type=click.FloatRange(min=0),
        envvar="TITAN_RECONNECT_TIMEOUT",
        default=config.DEFAULT_RECONNECT_TIMEOUT,
        show_default=True,
        help="Seconds to keep trying a master that went away (a restart) before failing; 0: fail at once "
        "[env TITAN_RECONNECT_TIMEOUT].",
    )(fn)


def tls_options(fn: F) -> F:
    """--tls-ca, --tls-cert, --tls-key: how a client or worker dials a master that serves TLS."""
    for name, env, what in (
        ("--tls-key", "TITAN_TLS_KEY", "Its key, for --tls-cert"),
        ("--tls-cert", "TITAN_TLS_CERT", "A client certificate, for a master that requires one"),
        ("--tls-ca", "TITAN_TLS_CA", "The cluster's CA certificate: dial the master with TLS"),
    ):
        fn = click.option(name, envvar=env, default=None, help=f"{what} [env {env}].")(fn)
    return fn


def client_options(fn: F) -> F:
    """--address, --token and --data-dir, resolved into a TitanClient passed as `client`.

    Commands without --reconnect-timeout fail at once when the master is unreachable, as a quick
    question should; those with it (see `reconnect_option`) ride out a restart."""

    @click.option(
        "--address",
        envvar="TITAN_ADDRESS",
        help="Master HOST:PORT [env TITAN_ADDRESS; default 127.0.0.1:9090].",
    )
    @click.option(
        "--token",
        envvar="TITAN_TOKEN",
        help="The cluster token or a named one (`token create`) [env TITAN_TOKEN; default: DATA_DIR/token].",
    )
    @click.option(
        "--data-dir",
        envvar="TITAN_DATA_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Where the token file is [env TITAN_DATA_DIR; default ~/.titan].",
    )
    @tls_options
    @functools.wraps(fn)
    @friendly_errors
    def wrapper(
        *args: Any,
        address: str | None,
        token: str | None,
        data_dir: Path | None,
        tls_ca: str | None,
        tls_cert: str | None,
        tls_key: str | None,
        **kwargs: Any,
    ) -> Any:
        if address:
            config.split_host_port(address)
        reconnect_timeout = kwargs.pop("reconnect_timeout", 0.0)
        with TitanClient(
            address=address,
            token=token,
            data_dir=str(data_dir) if data_dir else None,
            reconnect_timeout=reconnect_timeout,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
        ) as client:
            return fn(*args, client=client, **kwargs)

    return wrapper  # type: ignore[return-value]


def parse_tags(value: str | None) -> list[str]:
    tags = [t.strip() for t in (value or "").split(",") if t.strip()]
    for tag in tags:
        if not TAG_PATTERN.match(tag):
            raise click.BadParameter(f"invalid tag {tag!r}: use letters, digits, '_', '-', '.' or ':'")
    return tags


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors (`--log-format json`): time (ISO 8601, UTC),
    level, logger, message, and the traceback as `exception` when there is one. A message or a
    traceback spanning lines stays on one (JSON escapes its newlines).

    It adds no fields of its own beyond these: a record's extras could carry anything, and the
    master's and the worker's messages are written to leave credentials out."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


LOG_FORMATS = ("text", "json")


def setup_logging(verbose: bool = False, log_format: str = "text") -> None:
    """Log to stderr: lines for people ("text") or JSON objects for collectors ("json"; warnings
    too, so that nothing else comes out as plain text)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def log_format_option(fn: F) -> F:
    """--log-format text|json, for the long-running processes (master, worker, up)."""
    return click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        default="text",
        show_default=True,
        envvar="TITAN_LOG_FORMAT",
        help="Log lines for people (text) or one JSON object per line for log collectors (json) "
        "[env TITAN_LOG_FORMAT].",
    )(fn)


def _store(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """sqlite, memory, or a PostgreSQL URL; a password only from the environment (the command line
    is in `ps` for every user of the host)."""
    from urllib.parse import urlsplit

    from titan_runtime.store import is_postgres

    if value in ("sqlite", "memory"):
        return value
    if not is_postgres(value):
        raise click.BadParameter(
            f"{value[:100]!r} is not a store: use sqlite (the default), memory, or postgresql://USER@HOST:PORT/DB"
        )
    try:
        password = urlsplit(value).password
    except ValueError as exc:
        raise click.BadParameter(f"not a PostgreSQL URL: {exc}") from None
    if (
        password is not None
        and ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.COMMANDLINE
    ):
        raise click.BadParameter(
            "a password on the command line is visible to every user of this host (ps): put the URL "
            "in TITAN_STORE instead, or the password in PGPASSWORD or ~/.pgpass"
        )
    return value


def store_option(fn: F) -> F:
    return click.option(
        "--store",
        default="sqlite",
        show_default=True,
        envvar="TITAN_STORE",
        callback=_store,
        help="Where the master keeps its state: sqlite (in the data dir), memory (lost at exit), or a "
        "PostgreSQL URL, postgresql://USER@HOST:PORT/DB (the `postgres` extra; several masters may share it: docs/ha.md) [env TITAN_STORE].",
    )(fn)


def data_dir_option(fn: F) -> F:
    return click.option(
        "--data-dir",
        envvar="TITAN_DATA_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="State, logs, artifacts and the token [env TITAN_DATA_DIR; default ~/.titan].",
    )(fn)


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> float:
    """--since: a duration back from now ("90s", "10m", "2h", "1d") or seconds since the epoch;
    0.0 when not given."""
    from titan_runtime.client.specs import parse_duration

    if not value:
        return 0.0
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a duration (90s, 10m, 2h, 1d) or seconds since the epoch"
        ) from None
    return seconds if seconds > 10**9 else time.time() - seconds


def since_option(what: str) -> Callable[[F], F]:
    """--since DURATION, passed on as seconds since the epoch (0.0: no bound)."""

    def decorate(fn: F) -> F:
        return click.option(
            "--since",
            default=None,
            callback=_since,
            metavar="DURATION",
            help=f"Only {what} from this long ago on (90s, 10m, 2h, 1d; or seconds since the epoch).",
        )(fn)

    return decorate


def parse_pairs(pairs: tuple[str, ...], option: str, strip: bool = False) -> dict[str, str]:
    """Repeated KEY=VALUE options (--label, --env, --limit, --retention) as a dict; `strip`: around
    names and values too (settings, not data)."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if strip:
            key, value = key.strip(), value.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        found[key] = value
    return found


def parse_labels(pairs: tuple[str, ...]) -> dict[str, str]:
    return parse_pairs(pairs, "--label")


def check_min_free(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A click callback: --min-free is checked when it is read, not when first used."""
    from titan_runtime.diskspace import MinFreeError, parse_min_free

    try:
        parse_min_free(value)
    except MinFreeError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def parse_offer(
    cpus: int | None, memory: str | None, gpus: str | None
) -> tuple[int | None, int | None, tuple[str, ...] | None]:
    """A worker's --cpus, --memory and --gpus (None: not given, detected on its host), checked as a
    pool's are: (cpus, memory in MiB, device ids)."""
    from titan_runtime.core.resources import MAX_CPUS, parse_gpu_ids, parse_memory

    if cpus is not None and not 1 <= cpus <= MAX_CPUS:
        raise click.BadParameter(f"must be between 1 and {MAX_CPUS:,}", param_hint="--cpus")
    try:
        memory_mb = parse_memory(memory, "--memory") if memory is not None else None
        gpu_ids = parse_gpu_ids(gpus) if gpus is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return cpus, memory_mb, gpu_ids
