"""Retention's settings and its choice of files (core/retention.py): no disk, no clock."""

from __future__ import annotations

import pytest

from titan_runtime.core.retention import DAY, GIB, Retention, StoredFile, files_to_remove, retention_from


def test_settings_are_read_with_their_units_and_defaults() -> None:
    assert retention_from({}) == Retention(runs_days=30.0, runs=0, logs_days=30.0, logs_size=20 * GIB)
    got = retention_from({"runs_days": "7", "runs": "1000", "logs_size": "5G", "interval": 60})
    assert (got.runs_days, got.runs, got.logs_size, got.interval) == (7.0, 1000, 5 * GIB, 60.0)
    assert retention_from({"runs_days": 0}).runs_days == 0  # 0: kept forever


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"run_days": 3}, "unknown retention setting 'run_days'; the settings are runs_days"),
        ({"logs_size": "lots"}, "retention logs_size: expected a size like 20G"),
        ({"runs": "1.5"}, "retention runs: expected a whole number"),
        ({"runs_days": -1}, "retention runs_days: must be at least 0"),
        ({"interval": 0}, "retention interval: must be more than 0"),
        ({"runs_days": True}, "retention runs_days: expected a number"),
    ],
)
def test_a_wrong_setting_is_named_with_what_it_takes(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retention_from(settings)


def files(*specs: tuple[str, int, float]) -> list[StoredFile]:
    return [StoredFile(f"/{owner}/{i}", size, mtime, owner) for i, (owner, size, mtime) in enumerate(specs)]


NOW = 100 * DAY


def test_old_files_go_then_the_oldest_while_over_the_size_never_protected_ones() -> None:
    found = files(("old", 10, NOW - 40 * DAY), ("live", 50, NOW - 50 * DAY), ("a", 30, NOW - 5 * DAY),
                  ("b", 30, NOW - 4 * DAY), ("c", 30, NOW - 1 * DAY))  # fmt: skip
    by_age = files_to_remove(found, NOW, max_days=30, max_bytes=0, protected={"live"})
    assert [f.owner for f in by_age] == ["old"]
    # 150 bytes in all, at most 100: "old" (age), then "a" (oldest unprotected) bring it to 110, "b" to 80.
    by_size = files_to_remove(found, NOW, max_days=30, max_bytes=100, protected={"live"})
    assert [f.owner for f in by_size] == ["old", "a", "b"]
    assert files_to_remove(found, NOW, max_days=0, max_bytes=0, protected=set()) == []
    everything = files_to_remove(found, NOW, max_days=0, max_bytes=1, protected={"live"})
    assert [f.owner for f in everything] == ["old", "a", "b", "c"]  # protected bytes still count
