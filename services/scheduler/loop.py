"""The check loop of one replica: follows the shared control state and checks on its cadence.

Every replica checks on its own; claims make concurrent checks safe (each due portfolio is
claimed by exactly one). The state row is re-read every ``SCHEDULER_POLL_SECONDS`` so that a
start, stop or new interval sent to any replica reaches all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from datetime import datetime

from services.common.bus import TRANSIENT_ERRORS
from services.scheduler import repository as repo
from services.scheduler.check import check_once
from services.scheduler.context import SchedulerContext, log
from services.scheduler.schedule import ScheduleError, next_check_after


class CheckLoop:
    def __init__(self, ctx: SchedulerContext) -> None:
        self.ctx = ctx
        self.running = False
        self.next_check: datetime | None = None
        self._wake = asyncio.Event()
        self._check_now = False

    def wake(self, check_now: bool = False) -> None:
        self._check_now = self._check_now or check_now
        self._wake.set()

    async def start(self) -> None:
        """Create (or join) the shared state; auto-start starts it."""
        s = self.ctx.settings
        state = await repo.ensure_state(
            self.ctx.pool,
            check_interval=s.scheduler_check_interval,
            dry_run_mode=s.scheduler_dry_run,
            start=s.scheduler_enabled and s.scheduler_auto_start,
            replica=self.ctx.replica_id,
        )
        self.ctx.check_interval, self.ctx.dry_run_mode = state.check_interval, state.dry_run_mode
        if not s.scheduler_enabled:
            log.info("[Scheduler] Scheduler is disabled (SCHEDULER_ENABLED=false): no checks in this replica")

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except TRANSIENT_ERRORS as exc:
                    log.warning("[Scheduler] Check postponed: %s (%s)", type(exc).__name__, exc)
                except Exception:
                    log.exception("[Scheduler] Check failed")
                await self._sleep(stop)
        finally:
            with contextlib.suppress(Exception):
                await repo.forget_replica(self.ctx.pool, self.ctx.replica_id)

    async def tick(self) -> None:
        ctx = self.ctx
        enabled = ctx.settings.scheduler_enabled
        state = await repo.load_state(ctx.pool)
        await repo.heartbeat(ctx.pool, ctx.replica_id, socket.gethostname(), enabled)
        if state is None:
            return
        now = ctx.clock.now()
        interval_changed = state.check_interval != ctx.check_interval
        ctx.dry_run_mode = state.dry_run_mode
        try:
            next_check_after(state.check_interval, now)
            ctx.check_interval = state.check_interval
        except ScheduleError as exc:
            log.error("[Scheduler] Keeping check interval %s: %s", ctx.check_interval, exc)
            interval_changed = False
        want_running = enabled and state.is_running
        if want_running and not self.running:
            log.info("[Scheduler] Starting scheduler...")
            log.info("[Scheduler] Check interval: %s", ctx.check_interval)
            log.info("[Scheduler] Dry run mode: %s", str(ctx.dry_run_mode).lower())
            log.info("[Scheduler] Scheduler started successfully")
            self.running, self.next_check = True, now  # check at once: missed runs run now
        elif not want_running and self.running:
            log.info("[Scheduler] Scheduler stopped")
            self.running, self.next_check = False, None
        elif interval_changed and self.running:
            log.info("[Scheduler] Check interval: %s", ctx.check_interval)
            self.next_check = next_check_after(ctx.check_interval, now)
        check_now, self._check_now = self._check_now, False
        due = self.running and self.next_check is not None and now >= self.next_check
        if check_now or due:
            await check_once(ctx, now)
            if self.running:
                self.next_check = next_check_after(ctx.check_interval, ctx.clock.now())

    async def _sleep(self, stop: asyncio.Event) -> None:
        timeout = self.ctx.settings.scheduler_poll_seconds
        if self.next_check is not None:
            until = (self.next_check - self.ctx.clock.now()).total_seconds()
            timeout = max(min(timeout, until), 0.01)
        self._wake.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


