"""Cron expressions of schedules (croniter, UTC): checked the same way by the CLI, before it saves
anything, and by the master."""

from __future__ import annotations

from datetime import datetime, timezone

from croniter import croniter


class CronError(ValueError):
    """A cron expression the schedule cannot use; the message shows a good one."""


def check_cron(cron: str, seconds: bool = False) -> None:
    """Five fields (minute hour day month weekday); with `seconds`, six, the seconds last (as
    croniter reads them): a sixth field never slips in unasked, firing every second."""
    fields = len(cron.split())
    if seconds:
        if fields != 6 or not croniter.is_valid(cron):
            raise CronError(
                f"invalid cron expression {cron!r} with seconds: use six fields, the seconds last, "
                "for example '*/5 * * * * 30'"
            )
        return
    if fields == 6 and croniter.is_valid(cron):
        raise CronError(
            f"{cron!r} has six fields: a sixth (seconds) field needs --seconds (seconds=True); "
            "schedules take five fields, for example '*/5 * * * *'"
        )
    if fields != 5 or not croniter.is_valid(cron):
        raise CronError(f"invalid cron expression {cron!r}: use five fields, for example '*/5 * * * *'")


def next_after(cron: str, after: float) -> float:
    """The first time the expression fires after `after` (seconds since the epoch, UTC)."""
    return float(croniter(cron, datetime.fromtimestamp(after, tz=timezone.utc)).get_next(float))
