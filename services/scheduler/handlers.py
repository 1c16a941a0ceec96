"""The scheduler's consumers: manual triggers, run completions, control commands.

Each batch is one transaction that records its message ids in the inbox together with its
effect, so a redelivered message changes nothing (and is not logged or counted twice).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import datetime

import asyncpg

from contracts.v1.messages import RebalanceCompleted, RebalanceRequested, SchedulerControl
from services.common import db, metrics
from services.common.bus import Incoming
from services.common.logs import run_context
from services.scheduler import repository as repo
from services.scheduler.check import emit_claimed
from services.scheduler.context import SchedulerContext, log
from services.scheduler.report import completion_line, duration_ms
from services.scheduler.schedule import ScheduleError, validate_check_interval

REBALANCED = frozenset({"succeeded", "partial"})  # runs that move last_rebalanced_at


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


async def handle_requests(ctx: SchedulerContext, batch: list[Incoming[RebalanceRequested]]) -> None:
    """Claim each requested portfolio unless a run of it is active; refusals are recorded."""
    now = ctx.clock.now()
    started, refused = [], []
    async with ctx.pool.acquire() as conn, conn.transaction():
        fresh = await db.claim_inbox(conn, f"{ctx.consumer_prefix}.requests", [i.message_id for i in batch])
        for item in batch:
            request = item.message
            if item.message_id not in fresh:
                continue
            fresh.discard(item.message_id)  # the same message twice in one batch counts once
            portfolio_id = _uuid_or_none(request.portfolio_id)
            row = None
            if portfolio_id is not None:
                row = await _claim_requested(ctx, conn, request, portfolio_id, now)
            if row is not None:
                started.extend(await emit_claimed(ctx, conn, [row], now))
                continue
            current = await repo.portfolio_claim(conn, portfolio_id) if portfolio_id else None
            active, reason = _refusal(request, current)
            await repo.record_refusal(
                conn,
                message_id=request.message_id,
                portfolio_id=portfolio_id if current is not None else None,
                user_id=repo.as_text(current["user_id"]) if current is not None else None,
                run_id=active,
                description=f"Manual trigger refused: {reason}",
                details=json.dumps({"requested_by": request.requested_by, "reason": reason}),
            )
            refused.append((active, reason))
    await ctx.flush_outbox()
    for run in started:
        with run_context(run.run_id):
            log.info("[Scheduler] Rebalancing portfolio: %s (%s) [%s]", run.name, run.portfolio_id,
                     run.triggered_by)
    for active, reason in refused:
        with run_context(active):
            log.warning("[Scheduler] Manual trigger refused: %s", reason)


async def _claim_requested(
    ctx: SchedulerContext, conn: asyncpg.Connection, request: RebalanceRequested, portfolio_id: str, now: datetime
) -> asyncpg.Record | None:
    """Claim the requested portfolio, or None when it has a run, or the run would be live and its
    account has one. A savepoint keeps the batch's transaction when another replica's live claim
    on the account wins the race (the unique index refuses the later one)."""
    try:
        async with conn.transaction():
            return await repo.claim_one(
                conn,
                portfolio_id,
                now,
                ctx.lease,
                request.triggered_by,
                request.dry_run,
                ctx.dry_run_mode,
                # The API may choose the run id (the request's correlation id) to answer with it.
                run_id=_uuid_or_none(request.correlation_id),
            )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != repo.ONE_LIVE_RUN_PER_ACCOUNT:
            raise
        return None


def _refusal(request: RebalanceRequested, current: asyncpg.Record | None) -> tuple[str | None, str]:
    """The run that stands in the way (if any) and why a manual trigger was refused."""
    if current is None:
        return None, f"portfolio {request.portfolio_id} not found"
    if current["active_run_id"] is not None:
        active = repo.as_text(current["active_run_id"])
        return active, f"portfolio {current['name']} already has an active run ({active}); not queued twice"
    if current["account_run_id"] is not None:
        active = repo.as_text(current["account_run_id"])
        return active, (
            f"portfolio {current['name']}'s exchange account is being rebalanced live for portfolio"
            f" {current['account_run_portfolio']} (run {active}); one live run per account at a time,"
            " trigger again when it completes"
        )
    # The claim found neither: the racing run has completed since. Triggering again will do.
    return None, f"portfolio {current['name']}'s exchange account was busy with another live run; trigger again"


async def handle_completions(ctx: SchedulerContext, batch: list[Incoming[RebalanceCompleted]]) -> None:
    """End each run's claim (only the claim it names), set last/next rebalance, log the outcome."""
    now = ctx.clock.now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        fresh = await db.claim_inbox(
            conn, f"{ctx.consumer_prefix}.completions", [i.message_id for i in batch]
        )
        events = list({i.message_id: i.message for i in batch if i.message_id in fresh}.values())
        portfolio_ids = {_uuid_or_none(e.portfolio_id) for e in events} - {None}
        locked = await repo.lock_for_completion(conn, sorted(str(p) for p in portfolio_ids))
        rows = {str(r["id"]): r for r in locked}
        releases = []
        for event in events:
            row = rows.get(str(_uuid_or_none(event.portfolio_id)))
            if row is not None and repo.as_text(row["active_run_id"]) == event.run_id:
                rebalanced_at = event.completed_at if event.status in REBALANCED else None
                releases.append(
                    repo.Release(str(row["id"]), event.run_id, ctx.next_due_after(row, now), rebalanced_at)
                )
        released = await repo.release_claims(conn, releases)
    for event in events:
        row = rows.get(str(_uuid_or_none(event.portfolio_id)))
        name = row["name"] if row is not None else ""
        quote = row["quote_currency"] if row is not None else "USD"
        with run_context(event.run_id):
            line = completion_line(event, name, quote)
            (log.info if event.success else log.warning)(line)
            if row is not None and str(row["id"]) not in released:
                log.info("[Scheduler] Run %s had no active claim left (already released)", event.run_id)
        metrics.observe_run(
            event.status,
            event.triggered_by,
            duration_ms(event) / 1000,
            event.total_value_traded,
            event.fees,
            quote,
        )


async def handle_control(
    ctx: SchedulerContext,
    batch: list[Incoming[SchedulerControl]],
    wake: Callable[[bool], None],
) -> None:
    """Apply control commands to the shared state every replica follows; ``wake(check_now)``
    nudges this replica's loop so the change (or a requested check) takes effect at once."""
    check_now = False
    async with ctx.pool.acquire() as conn, conn.transaction():
        fresh = await db.claim_inbox(conn, f"{ctx.consumer_prefix}.control", [i.message_id for i in batch])
        for item in batch:
            if item.message_id not in fresh:
                continue
            fresh.discard(item.message_id)
            command = item.message
            by = f"{ctx.replica_id}:{command.action}"
            if command.action in ("start", "restart"):
                await repo.update_state(conn, updated_by=by, is_running=True)
                check_now = check_now or command.action == "restart"
            elif command.action == "stop":
                await repo.update_state(conn, updated_by=by, is_running=False)
            elif command.action == "check":
                check_now = True
            elif command.action == "update-config":
                interval = None
                if command.check_interval is not None:
                    try:
                        interval = validate_check_interval(command.check_interval)
                    except ScheduleError as exc:
                        log.error("[Scheduler] update-config refused: %s", exc)
                await repo.update_state(
                    conn, updated_by=by, check_interval=interval, dry_run_mode=command.dry_run_mode
                )
            log.info("[Scheduler] Control command: %s", command.action)
    wake(check_now)
    await asyncio.sleep(0)
