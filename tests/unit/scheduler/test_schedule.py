"""Schedule math over months and years with an injected clock: no sleeping, no wall time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler.clock import ManualClock
from services.scheduler.schedule import (
    ScheduleError,
    next_check_after,
    next_due,
    validate_check_interval,
    validate_schedule,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc, arg-type]


def due(*args: Any, **kwargs: Any) -> datetime:
    """next_due for schedules known to be usable."""
    result = next_due(*args, **kwargs)
    assert result is not None
    return result


def run_schedule(interval: str, start: datetime, end: datetime, step: timedelta, **kw) -> list[datetime]:
    """Simulate the scheduler: check every ``step``; a due portfolio runs and gets its next time."""
    clock = ManualClock(start)
    next_at = start  # a new portfolio is due at once
    runs = []
    while clock.now() < end:
        now = clock.now()
        if next_at is not None and next_at <= now:
            runs.append(now)
            next_at = due(interval, kw.get("cron"), kw.get("tz"), now, anchor=start)
        clock.advance(step)
    return runs


def test_hourly_over_a_month_runs_once_per_hour():
    start = utc(2024, 2, 1, 0, 30)
    runs = run_schedule("hourly", start, utc(2024, 3, 1, 0, 30), timedelta(minutes=15))
    assert len(runs) == 29 * 24
    assert all(r.minute == 30 for r in runs)


def test_daily_and_weekly_keep_their_anchor():
    start = utc(2024, 1, 3, 9, 15)  # a Wednesday
    daily = run_schedule("daily", start, utc(2024, 2, 3, 9, 15), timedelta(minutes=5))
    assert len(daily) == 31 and {(r.hour, r.minute) for r in daily} == {(9, 15)}
    weekly = run_schedule("weekly", start, utc(2024, 3, 1), timedelta(hours=1))
    assert [r.day for r in weekly] == [3, 10, 17, 24, 31, 7, 14, 21, 28]
    assert {r.weekday() for r in weekly} == {2}


def test_monthly_keeps_the_anchor_day_through_short_months():
    anchor = utc(2023, 1, 31, 12)
    slots, t = [], anchor
    for _ in range(14):
        t = due("monthly", None, None, t, anchor=anchor)
        slots.append(t.date().isoformat())
    assert slots[:4] == ["2023-02-28", "2023-03-31", "2023-04-30", "2023-05-31"]
    assert "2024-02-29" in slots  # leap year
    assert slots[-1] == "2024-03-31"


def test_monthly_over_a_year_with_hourly_checks_runs_twelve_times():
    start = utc(2024, 1, 31, 0)
    runs = run_schedule("monthly", start, utc(2025, 1, 30), timedelta(hours=1))
    assert [r.day for r in runs] == [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_missed_slots_collapse_into_one_run_after_downtime():
    anchor = utc(2024, 5, 1, 0)
    # Down from May 1 01:00 to May 1 07:20: six hourly slots were missed.
    stale_next = utc(2024, 5, 1, 1)
    back_up = utc(2024, 5, 1, 7, 20)
    assert stale_next <= back_up  # due once now
    following = next_due("hourly", None, None, back_up, anchor=anchor)
    assert following == utc(2024, 5, 1, 8)  # not 02:00, 03:00 ... again


def test_next_is_strictly_after():
    anchor = utc(2024, 1, 1)
    assert next_due("daily", None, None, anchor, anchor=anchor) == utc(2024, 1, 2)
    assert next_due("cron", "0 0 * * *", "UTC", anchor) == utc(2024, 1, 2)


def test_anchor_in_the_future_is_the_first_slot():
    assert next_due("weekly", None, None, utc(2024, 1, 1), anchor=utc(2024, 1, 5)) == utc(2024, 1, 5)


def test_cron_in_a_time_zone_follows_local_time_across_dst():
    ny = ZoneInfo("America/New_York")
    t = utc(2024, 3, 8)
    locals_ = []
    for _ in range(5):
        t = due("cron", "0 9 * * *", "America/New_York", t)
        locals_.append(t.astimezone(ny).hour)
    assert locals_ == [9] * 5  # 14:00 UTC before the change, 13:00 after


def test_cron_in_a_repeated_hour_runs_once_on_fall_back():
    t: datetime | None = utc(2024, 11, 2, 12)
    runs = []
    for _ in range(3):
        assert t is not None
        t = next_due("cron", "30 1 * * *", "America/New_York", t)
        runs.append(t)
    assert runs == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30), utc(2024, 11, 5, 6, 30)]


def test_cron_in_a_skipped_hour_still_runs_once_on_spring_forward():
    t = due("cron", "30 2 * * *", "America/New_York", utc(2024, 3, 9, 12))
    assert t == utc(2024, 3, 10, 7, 30)  # 03:30 EDT, right after the gap
    assert next_due("cron", "30 2 * * *", "America/New_York", t) == utc(2024, 3, 11, 6, 30)


def test_threshold_only_is_due_at_every_check():
    now = utc(2024, 1, 1, 10)
    assert next_due("threshold", None, None, now) == now
    assert next_due("threshold", None, None, now, next_check=utc(2024, 1, 1, 11)) == utc(2024, 1, 1, 11)


@pytest.mark.parametrize(
    ("interval", "cron", "tz"),
    [("fortnightly", None, None), ("cron", None, "UTC"), ("cron", "61 * * * *", "UTC"),
     ("cron", "0 * * * *", "Mars/Olympus")],
)
def test_unusable_schedules_are_refused(interval, cron, tz):
    with pytest.raises(ScheduleError):
        validate_schedule(interval, cron, tz)
    assert next_due(interval, cron, tz, utc(2024, 1, 1)) is None


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_due("daily", None, None, datetime(2024, 1, 1))


def test_check_interval_accepts_cron_or_seconds():
    assert next_check_after("0 * * * *", utc(2024, 1, 1, 10, 0)) == utc(2024, 1, 1, 11)
    assert next_check_after("0 * * * *", utc(2024, 1, 1, 10, 59)) == utc(2024, 1, 1, 11)
    assert next_check_after("2", utc(2024, 1, 1)) == utc(2024, 1, 1, 0, 0, 2)
    for bad in ("0", "-5", "every hour", ""):
        with pytest.raises(ScheduleError):
            validate_check_interval(bad)


@settings(max_examples=300, deadline=None)
@given(
    interval=st.sampled_from(["hourly", "daily", "weekly", "monthly"]),
    anchor=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
)
def test_next_due_is_after_and_on_the_anchor_grid(interval, anchor, offset):
    after = anchor + offset
    nxt = next_due(interval, None, None, after, anchor=anchor)
    assert nxt is not None and nxt > after
    grid = anchor.replace(microsecond=0)
    assert (nxt.minute, nxt.second) == (grid.minute, grid.second)
    if interval != "hourly":
        assert nxt.hour == grid.hour
    if interval == "monthly":
        assert nxt.day == grid.day or nxt.day < grid.day  # clamped at a short month only
    # Nothing is skipped: the slot before the next one is not after ``after``.
    step = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(days=7)}
    if interval in step and nxt - step[interval] >= grid:
        assert nxt - step[interval] <= after


@settings(max_examples=200, deadline=None)
@given(
    cron=st.sampled_from(["*/15 * * * *", "0 9 * * 1-5", "30 1 * * *", "0 0 1 * *"]),
    tz=st.sampled_from(["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]),
    after=st.datetimes(min_value=datetime(2022, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
)
def test_cron_next_is_strictly_after_and_increasing(cron, tz, after):
    first = next_due("cron", cron, tz, after)
    assert first is not None and first > after
    second = next_due("cron", cron, tz, first)
    assert second is not None and second > first
