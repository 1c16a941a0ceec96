"""Scheduler settings: the seed's SCHEDULER_* variables plus batch sizes (the lease is common:
``ServiceSettings.scheduler_lease_seconds``)."""

from __future__ import annotations

from pydantic import field_validator

from services.common.settings import ServiceSettings
from services.scheduler.schedule import ScheduleError, validate_check_interval


class SchedulerSettings(ServiceSettings):
    scheduler_enabled: bool = True
    # A cron expression ("0 * * * *", production) or seconds ("2", local stack and tests).
    scheduler_check_interval: str = "0 * * * *"
    scheduler_dry_run: bool = False  # forces every due run to dry-run
    scheduler_auto_start: bool = True
    # Portfolios claimed per statement (and due events per outbox transaction).
    scheduler_claim_batch: int = 500
    # How often the loop re-reads the shared control state (start/stop/config from any replica).
    scheduler_poll_seconds: float = 1.0
    scheduler_replica_id: str = ""  # default: host:pid

    @field_validator("scheduler_check_interval")
    @classmethod
    def _valid_interval(cls, value: str) -> str:
        try:
            return validate_check_interval(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from exc
