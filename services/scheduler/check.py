"""One scheduler check: fail expired leases, schedule edited rows, claim every due portfolio in
batches (claim + outbox in one transaction per batch), then publish the due events."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import ValidationError

from contracts.v1.strategy import TriggeredBy
from services.common import db, metrics
from services.common.crash import crash_point
from services.common.logs import run_context
from services.scheduler import repository as repo
from services.scheduler.context import PRODUCER, SchedulerContext, log
from services.scheduler.runs import SECOND_LIVE_PORTFOLIO, ClaimedRun, account_taken, due_event, scheduler_failure


@dataclass(frozen=True)
class CheckReport:
    found: int  # due and unclaimed when the check began
    claimed: int  # claimed by this replica
    waiting: int  # due live rows left waiting for another live run on their account
    expired: int  # leases failed by this replica
    rescheduled: int
    claim_ms: float  # time in the claim transactions (query + outbox write)
    publish_ms: float
    total_ms: float


def claimed_run(row: asyncpg.Record) -> ClaimedRun:
    trigger: TriggeredBy = row["active_run_trigger"]
    return ClaimedRun(
        run_id=str(row["active_run_id"]),
        portfolio=dict(row),
        triggered_by=trigger,
        dry_run=bool(row["active_run_dry_run"]),
        started_at=row["active_run_started_at"],
        due_at=row["due_at"],
    )


async def emit_claimed(
    ctx: SchedulerContext, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], now: datetime
) -> list[ClaimedRun]:
    """Write the due events of freshly claimed rows to the outbox (caller's transaction) and return
    the runs started. A live run whose account belongs to another live portfolio, or a row whose
    strategy cannot be snapshotted, fails at once and is released."""
    runs = [claimed_run(r) for r in rows]
    started: list[ClaimedRun] = []
    messages: list[db.OutboxMessage] = []
    releases: list[repo.Release] = []
    for run, row in zip(runs, rows, strict=True):
        failure = _refused(run)
        if failure is None:
            try:
                event = due_event(run)
            except (ValidationError, ValueError, TypeError, KeyError) as exc:
                failure = "invalid_strategy", f"unusable strategy: {exc}"[:500]
            else:
                messages.append(db.OutboxMessage(ctx.subjects.rebalance_due, event.message_id,
                                                 event.model_dump_json().encode()))
                started.append(run)
                continue
        code, reason = failure
        with run_context(run.run_id):
            log.error("[Scheduler] ✗ Cannot start %s (%s): %s", run.name, run.portfolio_id, reason)
        failed = scheduler_failure(
            run_id=run.run_id,
            portfolio_id=run.portfolio_id,
            user_id=run.user_id,
            triggered_by=run.triggered_by,
            dry_run=run.dry_run,
            started_at=run.started_at,
            now=now,
            code=code,
            message=reason,
        )
        messages.append(db.OutboxMessage(ctx.subjects.rebalance_completed, failed.message_id,
                                         failed.model_dump_json().encode()))
        releases.append(repo.Release(run.portfolio_id, run.run_id, ctx.next_due_after(row, now), None))
    await db.add_to_outbox(conn, PRODUCER, messages)
    await repo.release_claims(conn, releases)
    return started


def _refused(run: ClaimedRun) -> tuple[str, str] | None:
    """The code and reason a claimed run fails at once without trading, or None."""
    reason = account_taken(run)
    return None if reason is None else (SECOND_LIVE_PORTFOLIO, reason)


# A claim voided by another replica's live run on the same account is tried again at once (the
# retry skips that account); each retry follows a claim that committed, so this is a bound, not a wait.
CLAIM_ATTEMPTS = 5


async def claim_due_batch(ctx: SchedulerContext, now: datetime) -> tuple[int, int]:
    """Claim up to one batch; returns how many rows were claimed (started or failed at once) and
    how many due rows were examined (fewer than a batch: no more are due)."""
    for _ in range(CLAIM_ATTEMPTS):
        try:
            async with ctx.pool.acquire() as conn, conn.transaction():
                due = await repo.claim_due(conn, now, ctx.lease, ctx.batch, ctx.dry_run_mode)
                runs = await emit_claimed(ctx, conn, due.rows, now)
            break
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != repo.ONE_LIVE_RUN_PER_ACCOUNT:
                raise
            log.info("[Scheduler] Another replica started a live run on an account of this batch; claiming again")
    else:
        return 0, 0  # the next check tries again
    crash_point("scheduler.after_claim")
    for run in runs:
        with run_context(run.run_id):
            log.info("[Scheduler] Rebalancing portfolio: %s (%s)", run.name, run.portfolio_id)
    return len(due.rows), due.examined


async def expire_leases(ctx: SchedulerContext, now: datetime) -> int:
    """Fail runs active past their lease and free their portfolios (next due per schedule)."""
    total = 0
    while True:
        async with ctx.pool.acquire() as conn, conn.transaction():
            rows = await repo.lock_expired_leases(conn, now, ctx.batch)
            messages, releases = [], []
            for row in rows:
                run_id = str(row["active_run_id"])
                started = row["active_run_started_at"] or now
                reason = (
                    f"run {run_id} still active {int((now - started).total_seconds())}s after it started"
                    f" (lease {ctx.settings.scheduler_lease_seconds}s): marked failed, portfolio released"
                )
                event = scheduler_failure(
                    run_id=run_id,
                    portfolio_id=str(row["id"]),
                    user_id=str(row["user_id"]),
                    triggered_by=row["active_run_trigger"] or "scheduler",
                    dry_run=bool(row["active_run_dry_run"]),
                    started_at=started,
                    now=now,
                    code="lease_expired",
                    message=reason,
                )
                messages.append(
                    db.OutboxMessage(
                        ctx.subjects.rebalance_completed, event.message_id, event.model_dump_json().encode()
                    )
                )
                releases.append(repo.Release(str(row["id"]), run_id, ctx.next_due_after(row, now), None))
                with run_context(run_id):
                    log.warning("[Scheduler] ✗ Lease expired: %s (%s): %s", row["name"], row["id"], reason)
            await db.add_to_outbox(conn, PRODUCER, messages)
            await repo.record_expired(conn, [(r.run_id, r.portfolio_id) for r in releases])
            await repo.release_claims(conn, releases)
        total += len(rows)
        if len(rows) < ctx.batch:
            return total


async def reschedule_edited(ctx: SchedulerContext, now: datetime) -> int:
    """Give rows whose schedule was edited (next NULL) their next due time under the new schedule."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        rows = await repo.lock_unscheduled(conn, ctx.batch)
        updates = []
        for row in rows:
            next_at = ctx.next_due_after(row, now)
            if next_at is None:
                log.warning(
                    "[Scheduler] Portfolio %s (%s) has an unusable schedule (%s %r %s); not scheduled",
                    row["name"], row["id"], row["rebalance_interval"], row["cron"], row["timezone"],
                )
            else:
                updates.append((str(row["id"]), next_at))
        await repo.set_next_due(conn, updates)
    return len(updates)


async def check_once(ctx: SchedulerContext, now: datetime | None = None) -> CheckReport:
    """One check at ``now`` (default: the context's clock)."""
    now = now or ctx.clock.now()
    started = time.perf_counter()
    log.info("[Scheduler] Checking portfolios for rebalancing...")
    expired = await expire_leases(ctx, now)
    rescheduled = await reschedule_edited(ctx, now)
    found = await repo.count_due(ctx.pool, now)
    log.info("[Scheduler] Found %d portfolio(s) that need rebalancing", found)
    claimed = 0
    claim_s = publish_s = 0.0
    while True:
        t0 = time.perf_counter()
        batch_claimed, examined = await claim_due_batch(ctx, now)
        t1 = time.perf_counter()
        await ctx.flush_outbox()
        claim_s += t1 - t0
        publish_s += time.perf_counter() - t1
        claimed += batch_claimed
        if examined < ctx.batch:
            break
    if expired:
        await ctx.flush_outbox()
    waiting = await repo.count_waiting_for_account(ctx.pool, now, ctx.dry_run_mode) if found > claimed else 0
    if waiting:
        log.info("[Scheduler] %d portfolio(s) wait for another live run on their exchange account", waiting)
    active, oldest = await repo.active_runs(ctx.pool)
    metrics.set_schedule_state(
        max(found - claimed, 0), active, (now - oldest).total_seconds() if oldest else 0.0, waiting
    )
    total_ms = (time.perf_counter() - started) * 1000
    await repo.record_check(ctx.pool, at=now, elapsed_ms=int(total_ms), due=found)
    log.info("[Scheduler] Check completed in %dms", total_ms)
    return CheckReport(found, claimed, waiting, expired, rescheduled, claim_s * 1000, publish_s * 1000, total_ms)
