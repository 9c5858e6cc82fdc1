"""When schedules fire: on time, and after downtime with each missed-run policy."""

from __future__ import annotations

from titan_runtime.core.schedule import due, run_id_for


def every(seconds: float):  # type: ignore[no-untyped-def]
    return lambda cron, after: (after // seconds + 1) * seconds


def test_not_yet() -> None:
    assert due("c", 600.0, 599.0, False, every(600)) == (None, 600.0)


def test_on_time_fires_and_points_at_the_next_time() -> None:
    assert due("c", 600.0, 600.2, False, every(600)) == (600.0, 1200.0)


def test_missed_times_are_skipped_by_default() -> None:
    # The master was down from 590 to 2900: 600, 1200, 1800, 2400 were missed.
    assert due("c", 600.0, 2900.0, False, every(600)) == (None, 3000.0)


def test_catch_up_runs_once_for_the_latest_missed_time() -> None:
    assert due("c", 600.0, 2900.0, True, every(600)) == (2400.0, 3000.0)


def test_frequent_schedules_count_one_interval_late_as_missed() -> None:
    assert due("c", 10.0, 11.5, False, every(2)) == (10.0, 12.0)  # late, but within one interval
    assert due("c", 10.0, 13.0, False, every(2)) == (None, 14.0)  # later than one interval: missed


def test_run_ids_are_derived_from_the_scheduled_time() -> None:
    assert run_id_for("nightly", 1800.0) == run_id_for("nightly", 1800.9) == "sched-nightly-1800"
