"""What every part of the scheduler works with: the pool, the outbox relay, settings, the clock."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg

from contracts.subjects import Subjects
from services.scheduler.clock import Clock
from services.scheduler.schedule import next_check_after, next_due
from services.scheduler.settings import SchedulerSettings

log = logging.getLogger("services.scheduler")

PRODUCER = "scheduler"


class Relay(Protocol):
    async def flush(self, limit: int = 500) -> int: ...


@dataclass
class SchedulerContext:
    pool: asyncpg.Pool
    relay: Relay
    settings: SchedulerSettings
    clock: Clock
    replica_id: str
    # The shared control state as this replica last read it (the loop refreshes it).
    check_interval: str = ""
    dry_run_mode: bool = False
    consumer_prefix: str = field(default="scheduler")

    def __post_init__(self) -> None:
        self.check_interval = self.check_interval or self.settings.scheduler_check_interval
        self.dry_run_mode = self.dry_run_mode or self.settings.scheduler_dry_run

    @property
    def subjects(self) -> Subjects:
        return self.settings.subjects

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.scheduler_lease_seconds)

    @property
    def batch(self) -> int:
        return self.settings.scheduler_claim_batch

    def next_due_after(self, row: asyncpg.Record, now: datetime) -> datetime | None:
        """The portfolio's next due time after ``now`` (threshold-only: the next check)."""
        return next_due(
            row["rebalance_interval"],
            row["cron"],
            row["timezone"],
            now,
            anchor=row["created_at"],
            next_check=next_check_after(self.check_interval, now),
        )

    async def flush_outbox(self) -> int:
        """Publish what this (or any) replica left in the scheduler's outbox; acks are checked."""
        total = 0
        while (published := await self.relay.flush()) > 0:
            total += published
        return total
