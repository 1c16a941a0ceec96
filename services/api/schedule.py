"""When a new or rescheduled portfolio is first due (pure).

The scheduler owns ``next_rebalance_at`` once a portfolio has run; the API sets it only when a
portfolio is created or its schedule changes, so that a new weekly portfolio is not due at once
and a switch from monthly to hourly takes effect within the hour. Threshold-only portfolios are
due at once: the scheduler checks their drift on every pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

_PERIODS: dict[str, timedelta] = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(weeks=1),
    "monthly": timedelta(days=30),
}


def first_due_at(interval: str, cron: str | None, timezone: str, now: datetime) -> datetime:
    """The first time a portfolio with this schedule is due, from ``now`` (timezone-aware)."""
    if interval == "cron" and cron:
        local_now = now.astimezone(ZoneInfo(timezone))
        following: datetime = croniter(cron, local_now).get_next(datetime)
        return following
    period = _PERIODS.get(interval)
    if period is None:  # threshold-only: checked on every scheduler pass
        return now
    return now + period
