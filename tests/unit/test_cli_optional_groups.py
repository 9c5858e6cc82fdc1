"""`titan-runtime airflow` lives in an optional extra: the CLI must work without it and say how to get it."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from titan_runtime import cli


@pytest.fixture
def without_airflow_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import airflow_client` fail as it does where the airflow extra is not installed."""
    for name in list(sys.modules):
        if name.startswith(("airflow_client", "titan_airflow.cli", "titan_airflow.bridge")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "airflow_client", None)
    for command in cli.cli.commands.values():
        if isinstance(command, cli.LazyGroup):
            monkeypatch.setattr(command, "_group", None)


def test_help_lists_the_airflow_group_without_importing_it(without_airflow_client: None) -> None:
    result = CliRunner().invoke(cli.cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert "airflow" in result.output
    assert "titan_airflow.cli" not in sys.modules


def test_airflow_commands_without_the_extra_say_what_to_install(without_airflow_client: None) -> None:
    for argv in (["airflow", "trigger", "some_dag"], ["airflow", "--help"]):
        result = CliRunner().invoke(cli.cli, argv)
        assert result.exit_code == 1, result.output
        assert "needs the airflow extra (airflow_client is not installed)" in result.output
        assert "pip install 'titan-runtime[airflow]'" in result.output


def test_other_commands_work_without_the_extra(without_airflow_client: None) -> None:
    result = CliRunner().invoke(cli.cli, ["kv", "--help"])
    assert result.exit_code == 0, result.output
