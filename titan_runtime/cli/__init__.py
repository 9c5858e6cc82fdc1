"""`titan-runtime`: start a cluster, submit work, watch it, inspect it.

Client commands find the master through --address / TITAN_ADDRESS (TITAN_HOST/TITAN_PORT),
default 127.0.0.1:9090, and authenticate with --token / TITAN_TOKEN or the `token` file in the
data dir (--data-dir / TITAN_DATA_DIR, default ~/.titan). Errors print one line saying what was
wrong and what to do, and exit non-zero.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

# gRPC's own log lines (a connection's GOAWAY when a master stops) are noise on a command's output:
# errors only, unless asked for. gRPC reads it when it loads, which the next import does.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from titan_runtime.cli.options import EXIT_CANCELLED, friendly_errors
from titan_runtime.version import __version__

#: Every command, by name, and where it is defined: a command's module (and what it imports) is
#: loaded only when that command runs, so `run-status` does not pay for `up`'s imports.
COMMANDS = {
    "up": "processes:up", "master": "processes:master", "worker": "workers:worker",
    "workers": "workers:workers", "submit": "jobs:submit", "status": "jobs:status", "logs": "jobs:logs",
    "cancel": "jobs:cancel", "result": "jobs:result", "runs": "history:runs", "gc": "history:gc",
    "run": "runs:run_pipeline", "validate": "runs:validate", "run-status": "runs:run_status",
    "approve": "runs:approve", "reject": "runs:reject", "approvals": "runs:approvals",
    "agent-runs": "runs:agent_runs", "schedule": "runs:schedule", "dags": "runs:dags",
    "services": "services:services", "service": "services:service", "kv": "kv:kv",
    "autoscaler": "scaling:autoscaler", "ssh": "scaling:ssh", "certs": "tls:certs", "audit": "audit:audit",
    "secret": "secrets:secret", "token": "tokens:token", "mcp": "mcp:mcp", "dashboard": "dashboard:dashboard",
}  # fmt: skip


class TitanCli(click.Group):
    """The top-level group: commands from COMMANDS are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = self.commands.get(cmd_name)
        if found is None and cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name].partition(":")
            found = getattr(importlib.import_module(f"titan_runtime.cli.{module}"), attr)
            self.add_command(found, cmd_name)
        return found


@click.group(cls=TitanCli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="titan-runtime")
def cli() -> None:
    """Titan: run scripts, commands and DAGs on a cluster of capability-tagged workers.

    \b
    Start a local cluster:   titan-runtime up
    Run a script on it:      titan-runtime submit --wait hello.py
    Run a command:           titan-runtime submit --follow -- echo hi
    See what happened:       titan-runtime status ID; titan-runtime logs ID
    """


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(titan-runtime completion bash)"    (in ~/.bashrc)
    zsh:   eval "$(titan-runtime completion zsh)"     (in ~/.zshrc)
    fish:  titan-runtime completion fish > ~/.config/fish/completions/titan-runtime.fish
    """
    from click.shell_completion import get_completion_class

    found = get_completion_class(shell)
    assert found is not None  # the choice allows only shells click knows
    click.echo(found(cli, {}, "titan-runtime", "_TITAN_RUNTIME_COMPLETE").source())


cli.add_command(completion)


class LazyGroup(click.Group):
    """A command group from an optional extra: imported only when used, with an install hint when missing."""

    def __init__(self, name: str, import_path: str, extra: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.import_path = import_path
        self.extra = extra
        self._group: click.Group | None = None

    def _load(self) -> click.Group:
        if self._group is None:
            module_name, _, attr = self.import_path.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                missing = (exc.name or str(exc)).split(".")[0]
                raise click.ClickException(
                    f"`titan-runtime {self.name}` needs the {self.extra} extra ({missing} is not "
                    f"installed): pip install 'titan-runtime[{self.extra}]'"
                ) from None
            self._group = getattr(module, attr)
        return self._group

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._load().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load().get_command(ctx, cmd_name)


cli.add_command(
    LazyGroup(
        "airflow",
        import_path="titan_airflow.cli:airflow",
        extra="airflow",
        help="Start Airflow DAG runs and wait for them, through Airflow's REST API (needs the airflow extra).",
    )
)


@cli.command(hidden=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@friendly_errors
def demo(data_dir: Path | None) -> None:
    """Start a throwaway cluster, run the example pipeline, show what happened, stop (make demo)."""
    from titan_runtime.demo import run_demo

    sys.exit(run_demo(data_dir))


def main() -> None:
    """Entry point: usage errors are one line too (what was wrong, where to read more)."""
    try:
        code = cli.main(prog_name="titan-runtime", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "titan-runtime"
        click.echo(f"titan-runtime: error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"titan-runtime: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_CANCELLED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
