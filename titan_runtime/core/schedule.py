"""When a schedule fires: on time, or after the master was down (the missed-run policy).

Pure: the cron arithmetic is passed in (`next_after(cron, t)` is the first cron time after t).
"""

from __future__ import annotations

from collections.abc import Callable

#: A fire time the scheduler reaches this late counts as missed (the master was down or busy); for a
#: schedule firing more often, one interval.
MISSED_AFTER = 60.0


def run_id_for(schedule: str, fire_time: float) -> str:
    """The run a fire creates. Derived from the scheduled time, so firing twice (a master that crashed
    between submitting and recording the fire) submits the same run id: idempotent, never a double run."""
    return f"sched-{schedule}-{int(fire_time)}"


def due(
    cron: str,
    next_fire: float,
    now: float,
    catch_up: bool,
    next_after: Callable[[str, float], float],
    max_steps: int = 100_000,
) -> tuple[float | None, float]:
    """(the fire time to run now, or None; the next fire time to wait for).

    On time: run `next_fire`. Missed (the master was down past it): with `catch_up`, run once for
    the latest missed time; without, skip every missed time. Either way, wait for the first cron
    time after `now` next.
    """
    if now < next_fire:
        return None, next_fire
    following = next_after(cron, next_fire)
    if now - next_fire <= min(MISSED_AFTER, following - next_fire):
        return next_fire, following

    latest = next_fire
    for _ in range(max_steps):
        following = next_after(cron, latest)
        if following > now:
            break
        latest = following
    return (latest if catch_up else None), next_after(cron, now)
