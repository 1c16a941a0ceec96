"""Schedule math, pure: when is a portfolio next due, and when does the scheduler check next.

Interval schedules sit on a grid anchored at the portfolio's anchor time (its creation): hourly
keeps the anchor's minute, daily its time of day, weekly its weekday, monthly its day of month,
clamped at short months and restored after them (Jan 31 -> Feb 28/29 -> Mar 31). Computing the
first slot strictly after ``after`` is what collapses missed slots after downtime into one run,
and a grid (instead of "last run + interval") keeps runs from drifting by their own duration.
Interval times are UTC; a cron expression is read in the portfolio's time zone (DST-safe through
zoneinfo), and threshold-only portfolios are due at every check.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

INTERVALS = ("hourly", "daily", "weekly", "monthly", "cron", "threshold")
_FIXED_STEPS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(days=7)}


class ScheduleError(ValueError):
    """A schedule that cannot be computed (unknown interval, bad cron, unknown time zone)."""


def validate_schedule(interval: str, cron: str | None, timezone: str | None) -> None:
    """Raise ``ScheduleError`` with a readable reason when the schedule cannot be used."""
    if interval not in INTERVALS:
        raise ScheduleError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVALS)}")
    if interval == "cron":
        if not cron or not croniter.is_valid(cron):
            raise ScheduleError(f"invalid cron expression {cron!r}")
        _zone(timezone)


def next_due(
    interval: str,
    cron: str | None,
    timezone: str | None,
    after: datetime,
    *,
    anchor: datetime | None = None,
    next_check: datetime | None = None,
) -> datetime | None:
    """The first due time strictly after ``after`` (UTC), or None when the schedule is unusable.

    ``anchor`` fixes the grid of interval schedules (default: ``after`` itself). ``next_check``
    is when the scheduler looks next: a threshold-only portfolio is due then (default: at once,
    i.e. at whatever check comes next).
    """
    _require_aware(after)
    try:
        validate_schedule(interval, cron, timezone)
    except ScheduleError:
        return None
    after = after.astimezone(UTC)
    if interval == "threshold":
        return next_check.astimezone(UTC) if next_check is not None else after
    if interval == "cron":
        assert cron is not None
        return _next_cron(cron, _zone(timezone), after)
    grid = (anchor or after).astimezone(UTC).replace(microsecond=0)
    if interval == "monthly":
        return _next_monthly(grid, after)
    return _next_fixed(grid, _FIXED_STEPS[interval], after)


def _next_fixed(anchor: datetime, step: timedelta, after: datetime) -> datetime:
    if anchor > after:
        return anchor
    steps = (after - anchor) // step + 1
    return anchor + steps * step


def _month_slot(anchor: datetime, year: int, month: int) -> datetime:
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def _next_monthly(anchor: datetime, after: datetime) -> datetime:
    if anchor > after:
        return anchor
    index = after.year * 12 + after.month - 1
    slot = _month_slot(anchor, index // 12, index % 12 + 1)
    if slot <= after:
        index += 1
        slot = _month_slot(anchor, index // 12, index % 12 + 1)
    return slot


def _next_cron(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    """Cron on local wall-clock time: a slot in a repeated hour (DST fall-back) runs once, at its
    first occurrence; a slot in a skipped hour (spring-forward) runs once, just after the gap."""
    wall = after.astimezone(zone).replace(tzinfo=None)
    while True:
        wall = croniter(expression, wall).get_next(datetime)
        result = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if result > after:
            return result


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name!r}") from exc


def _require_aware(when: datetime) -> None:
    if when.tzinfo is None:
        raise ValueError("schedule math needs timezone-aware datetimes")


# ---------------------------------------------------------------------- the check loop's cadence
def validate_check_interval(spec: str) -> str:
    """A check interval is a cron expression ("0 * * * *") or a number of seconds ("2")."""
    spec = spec.strip()
    seconds = _as_seconds(spec)
    if seconds is not None:
        if seconds <= 0:
            raise ScheduleError(f"check interval must be positive, got {spec!r}")
        return spec
    if not croniter.is_valid(spec):
        raise ScheduleError(f"check interval {spec!r} is neither a cron expression nor seconds")
    return spec


def next_check_after(spec: str, after: datetime) -> datetime:
    """When the check loop runs next after ``after`` (UTC, cron read in UTC)."""
    _require_aware(after)
    spec = validate_check_interval(spec)
    seconds = _as_seconds(spec)
    if seconds is not None:
        return after + timedelta(seconds=seconds)
    return _next_cron(spec, ZoneInfo("UTC"), after.astimezone(UTC))


def _as_seconds(spec: str) -> float | None:
    try:
        return float(spec)
    except ValueError:
        return None
