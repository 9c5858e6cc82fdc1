"""Where a client looks for its master: the argument, the environment, then the master running
from its data dir (master.json), then the default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from titan_runtime import config


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TITAN_ADDRESS", "TITAN_HOST", "TITAN_PORT", "TITAN_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def _ready(directory: Path, pid: int, address: str = "127.0.0.1:7777") -> None:
    directory.mkdir(exist_ok=True)
    (directory / "master.json").write_text(json.dumps({"address": address, "pid": pid}))


def test_a_running_master_in_the_data_dir_is_found(tmp_path: Path, no_env: None) -> None:
    _ready(tmp_path, os.getpid())  # alive: this very process
    assert config.address(None, tmp_path) == "127.0.0.1:7777"
    assert config.address("10.0.0.1:1", tmp_path) == "10.0.0.1:1"  # the argument first


def test_the_environment_comes_before_the_data_dir(
    tmp_path: Path, no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ready(tmp_path, os.getpid())
    monkeypatch.setenv("TITAN_PORT", "9191")
    assert config.address(None, tmp_path) == "127.0.0.1:9191"
    monkeypatch.setenv("TITAN_ADDRESS", "example:1")
    assert config.address(None, tmp_path) == "example:1"


def test_a_master_json_left_by_a_dead_master_or_unreadable_is_ignored(tmp_path: Path, no_env: None) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    _ready(tmp_path, int(gone.stdout))  # that process has exited
    assert config.address(None, tmp_path) == "127.0.0.1:9090"
    (tmp_path / "master.json").write_text("{not json")
    assert config.address(None, tmp_path) == "127.0.0.1:9090"
    assert config.address(None, tmp_path / "missing") == "127.0.0.1:9090"
