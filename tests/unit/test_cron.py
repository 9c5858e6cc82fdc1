"""Cron expressions: five fields, or six (seconds last) only when asked for."""

from __future__ import annotations

import pytest

from titan_runtime.cron import CronError, check_cron, next_after


def test_five_fields_by_default_and_six_only_with_seconds() -> None:
    check_cron("*/5 * * * *")
    check_cron("* * * * * */2", seconds=True)
    with pytest.raises(CronError, match="needs --seconds"):
        check_cron("* * * * * *")  # would fire every second
    with pytest.raises(CronError, match="six fields, the seconds last"):
        check_cron("*/5 * * * *", seconds=True)
    for bad in ("", "* * *", "61 * * * *", "not cron at all"):
        with pytest.raises(CronError, match="use five fields"):
            check_cron(bad)


def test_next_after_is_in_utc() -> None:
    assert next_after("0 3 * * *", 0.0) == 3 * 3600.0  # 1970-01-01 03:00 UTC
    assert (
        next_after(
            "* * * * * 30",
            0.0,
        )
        == 30.0
    )
