"""Step output is readable through TitanComputeLogManager while the step runs, read from the master."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

from tests.dagster import jobs
from tests.dagster.conftest import expected_preload, preloaded_for, run_config, warm_and_cold
from tests.helpers import ProcessCluster, wait_until
from titan_dagster import TitanComputeLogManager, naming
from titan_dagster.compute_logs import parse_log_key

pytestmark = pytest.mark.integration


def logs_captured_file_key(instance: DagsterInstance) -> tuple[str, str] | None:
    """(run id, file key) from the first "logs captured" event: what the UI reads logs by."""
    runs = instance.get_runs(limit=1)
    if not runs:
        return None
    events = instance.all_logs(runs[0].run_id, of_type=DagsterEventType.LOGS_CAPTURED)
    if not events or events[0].dagster_event is None:
        return None
    return runs[0].run_id, events[0].dagster_event.logs_captured_data.file_key


@warm_and_cold
def test_the_ui_reads_step_output_from_titan_while_the_step_runs(
    titan: ProcessCluster, instance: DagsterInstance, tmp_path: Path, warm: bool
) -> None:
    gate = tmp_path / "gate"
    seen: dict[str, object] = {}
    problems: list[BaseException] = []

    def webserver() -> None:
        """What the Dagster UI does, in its own instance (as its own process would)."""
        try:
            with DagsterInstance.from_ref(instance.get_ref()) as ui:
                manager = ui.compute_log_manager
                assert isinstance(manager, TitanComputeLogManager)
                run_id, file_key = wait_until(
                    lambda: logs_captured_file_key(ui), timeout=60, interval=0.1, what="logs captured"
                )
                log_key = manager.build_log_key_for_run(run_id, file_key)
                seen["log_key"] = log_key

                def both_lines() -> bool:
                    data = manager.get_log_data(log_key)
                    return b"LOG-MARKER-out" in (data.stdout or b"") and b"LOG-MARKER-err" in (
                        data.stderr or b""
                    )

                wait_until(both_lines, timeout=60, interval=0.1, what="the step's output in the UI")
                ref = parse_log_key(log_key)
                assert ref is not None
                record = titan.client.get_job(ref.ref)
                seen["state_while_read"] = record.state
                seen["preloaded"] = preloaded_for(record.attempts[-1].pid)
                seen["complete_while_running"] = manager.is_capture_complete(log_key)
        except BaseException as exc:
            problems.append(exc)
        finally:
            gate.touch()  # let the step finish whatever happened

    watcher = threading.Thread(target=webserver, daemon=True)
    watcher.start()
    config = run_config(titan, warm=warm, ops={"chatty": {"config": {"gate": str(gate)}}})
    with execute_job(reconstructable(jobs.chatty_job), instance=instance, run_config=config) as result:
        assert result.success
        run_id = result.run_id
    watcher.join(60)
    assert not problems, problems
    # It was read while the step was still running, not after.
    assert seen["state_while_read"] == "RUNNING"
    assert seen["complete_while_running"] is False
    assert seen["preloaded"] == expected_preload(warm)

    log_key = seen["log_key"]
    assert isinstance(log_key, list)
    ref = parse_log_key(log_key)
    assert ref is not None and ref.run_id == naming.step_run_id(run_id, "chatty", 0)
    manager = instance.compute_log_manager
    titan.client.wait(ref.ref, timeout=30)
    assert manager.is_capture_complete(log_key)
    data = manager.get_log_data(log_key)
    stdout = (data.stdout or b"").decode()
    assert "LOG-MARKER-out" in stdout and "LOG-MARKER-end" in stdout
    assert "LOG-MARKER-err" in (data.stderr or b"").decode()
    assert "LOG-MARKER-err" not in stdout  # streams kept apart
    # Cursors resume where the last read stopped, per stream.
    later = manager.get_log_data(log_key, cursor=data.cursor)
    assert not later.stdout and not later.stderr
    metadata = manager.get_log_metadata(log_key)
    assert f"Titan job {ref.ref}" in (metadata.stdout_location or "")
    # The UI's "download" link: the log is fetched from Titan into the local file it serves.
    manager.download_from_cloud_storage(log_key, manager_io_type("stdout"))
    path = Path(manager.local_manager.get_captured_local_path(log_key, "out"))
    assert "LOG-MARKER-end" in path.read_text()
    # A live subscription on a finished step gets everything at once.
    received: list[bytes] = []
    subscription = manager.subscribe(log_key)(lambda chunk: received.append(chunk.stdout or b""))
    assert subscription.is_complete and b"LOG-MARKER-end" in b"".join(received)
    subscription.dispose()


def manager_io_type(name: str):  # type: ignore[no-untyped-def]
    from titan_dagster._compat import ComputeIOType

    return ComputeIOType(name)
