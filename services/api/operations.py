"""Portfolio operations shared by the seed's routes and the v1 routes.

``next_rebalance_at`` is the scheduler's: a new portfolio is stored with it NULL ("to be
scheduled") and the scheduler computes the first due time from the schedule; an edit of the
interval, cron or time zone sets it NULL again through migration 003's trigger. The API never
picks due times itself, so there is one rule for them, in the scheduler.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import nats
from fastapi import HTTPException

from contracts.envelope import new_id
from contracts.v1.messages import AbandonOrders, RebalanceRequested, SchedulerControl
from services.api.auth import Principal
from services.api.context import ApiContext
from services.api.errors import invalid
from services.api.portfolio_changes import DEFAULTS, apply_changes
from services.api.repositories import portfolios as repo
from services.api.schemas import PortfolioCreate, PortfolioFields, SchedulerCommand

_PUBLISH_ERRORS = (TimeoutError, nats.errors.Error, OSError)


def _not_found(portfolio_id: UUID) -> HTTPException:
    return HTTPException(404, f"portfolio {portfolio_id} not found")


def _changes(body: PortfolioFields) -> dict[str, Any]:
    return {k: v for k, v in body.model_dump(exclude_unset=True).items() if k != "id"}


async def create_portfolio(ctx: ApiContext, who: Principal, body: PortfolioCreate) -> dict[str, Any]:
    change = apply_changes(DEFAULTS, _changes(body))
    problems = list(change.problems)
    async with ctx.tx(who.user_id) as conn:
        connection_id = await repo.connection_for_portfolio(conn, body.connection_id)
        if connection_id is None:
            problems.append(
                ("connectionId", "no such exchange connection" if body.connection_id
                 else "add an exchange connection first (POST /api/v1/connections)")
            )
        elif not change.values["dry_run"]:
            problems += await _one_live_portfolio(conn, connection_id, None)
        if problems:
            raise invalid(problems)
        values = {**change.values, "connection_id": connection_id}
        return await repo.insert_portfolio(conn, who.user_id, values)


async def update_portfolio(
    ctx: ApiContext, who: Principal, portfolio_id: UUID, body: PortfolioFields
) -> dict[str, Any]:
    changes = _changes(body)
    async with ctx.tx(who.user_id) as conn:
        current = await repo.get_portfolio(conn, portfolio_id, lock=True)
        if current is None:
            raise _not_found(portfolio_id)
        change = apply_changes(current, changes)
        if "connection_id" in change.changed and current["active_run_id"] is not None:
            # The run trades the account it was claimed on: moved now, the portfolio would leave
            # that account looking free of live runs while the run still trades it.
            raise HTTPException(
                409,
                f"portfolio {portfolio_id} has a rebalance in progress (run {current['active_run_id']}) on its"
                " exchange connection; move it to another connection once the run ends",
            )
        problems = list(change.problems)
        if "connection_id" in change.changed and await repo.connection_for_portfolio(
            conn, change.values["connection_id"]
        ) is None:
            problems.append(("connectionId", "no such exchange connection"))
        elif change.changed & {"connection_id", "dry_run"} and not change.values["dry_run"]:
            problems += await _one_live_portfolio(conn, change.values["connection_id"], portfolio_id)
        if problems:
            raise invalid(problems)
        updated = await repo.update_portfolio(conn, portfolio_id, change.values)
        if updated is None:
            raise _not_found(portfolio_id)
        return updated


async def _one_live_portfolio(
    conn: asyncpg.Connection, connection_id: UUID, portfolio_id: UUID | None
) -> list[tuple[str, str]]:
    """A portfolio rebalances its whole account: two live ones on one account would each undo the
    other's trades on every run. The problem to report when another live one is there."""
    other = await repo.live_portfolio_on(conn, connection_id, portfolio_id)
    if other is None:
        return []
    return [(
        "connectionId",
        f"this exchange connection already trades for portfolio {other['name']!r} ({other['id']}): a"
        " portfolio rebalances the whole account, so an account has one live portfolio; make one of"
        " them a dry run (dryRun) or connect another account",
    )]


async def get_portfolio(ctx: ApiContext, who: Principal, portfolio_id: UUID) -> dict[str, Any]:
    async with ctx.tx(who.user_id) as conn:
        found = await repo.get_portfolio(conn, portfolio_id)
    if found is None:
        raise _not_found(portfolio_id)
    return found


async def list_portfolios(ctx: ApiContext, who: Principal) -> list[dict[str, Any]]:
    async with ctx.tx(who.user_id) as conn:
        return await repo.list_portfolios(conn)


async def delete_portfolio(ctx: ApiContext, who: Principal, portfolio_id: UUID) -> None:
    async with ctx.tx(who.user_id) as conn:
        current = await repo.get_portfolio(conn, portfolio_id, lock=True)
        if current is None:
            raise _not_found(portfolio_id)
        if current["active_run_id"] is not None:
            raise HTTPException(
                409, f"portfolio {portfolio_id} has a rebalance in progress; delete it once the run ends"
            )
        await repo.delete_portfolio(conn, portfolio_id)


async def request_run(ctx: ApiContext, who: Principal, portfolio_id: UUID, dry_run: bool | None) -> str:
    """Publish a manual RebalanceRequested; returns its message id. The scheduler claims the
    portfolio atomically, so a request racing an active run is refused there too."""
    async with ctx.tx(who.user_id) as conn:
        row = await conn.fetchrow(
            "SELECT active_run_id, connection_id, dry_run FROM portfolios WHERE id = $1", portfolio_id
        )
        if row is None:
            raise _not_found(portfolio_id)
        if row["active_run_id"] is not None:
            raise HTTPException(
                409,
                f"portfolio {portfolio_id} already has a rebalance in progress (run {row['active_run_id']});"
                " try again when it completes",
            )
        live = dry_run is False or (dry_run is None and not row["dry_run"])
        if live:
            await _account_free_for_live_run(conn, row["connection_id"], portfolio_id, row["dry_run"])
    message = RebalanceRequested(
        correlation_id=new_id(),
        portfolio_id=str(portfolio_id),
        requested_by=str(who.user_id),
        triggered_by="manual",
        dry_run=dry_run,
    )
    await publish_command(ctx, ctx.bus.subjects.rebalance_request, message)
    return message.message_id


async def _account_free_for_live_run(
    conn: asyncpg.Connection, connection_id: UUID, portfolio_id: UUID, is_dry_run: bool
) -> None:
    """A live run trades the whole account: a dry-run portfolio may not trade live beside the
    account's live portfolio (422), a live portfolio made after another on the account may not
    trade at all (409), and no live run starts while another trades the account (409). The
    scheduler refuses each of these too; this answers at once."""
    if is_dry_run:
        other = await repo.live_portfolio_on(conn, connection_id, portfolio_id)
        if other is not None:
            raise invalid([(
                "dryRun",
                f"this portfolio's exchange account trades for portfolio {other['name']!r} ({other['id']}):"
                " a live run of this dry-run portfolio would undo that portfolio's allocation; trigger"
                " it as a dry run, or connect another account",
            )])
    else:
        first = await repo.live_portfolio_before(conn, portfolio_id)
        if first is not None:
            raise HTTPException(
                409,
                f"portfolio {first['name']!r} ({first['id']}) was made first and trades this exchange"
                " connection live: each rebalances the whole account, so the two would undo each other's"
                " trades, and this one's live runs are refused; trigger it as a dry run (dryRun), make it"
                " one, or move it to its own account",
            )
    busy = await repo.live_run_on(conn, connection_id, portfolio_id)
    if busy is not None:
        raise HTTPException(
            409,
            f"this portfolio's exchange account is being rebalanced live for portfolio {busy['name']!r}"
            f" (run {busy['active_run_id']}); one live run per account at a time, try again when it completes",
        )


async def control_scheduler(ctx: ApiContext, command: SchedulerCommand) -> str:
    config = command.config
    if command.action == "update-config" and (
        config is None or (config.check_interval is None and config.dry_run_mode is None)
    ):
        raise invalid([("config", "update-config needs checkInterval and/or dryRunMode")])
    message = SchedulerControl(
        correlation_id=new_id(),
        action=command.action,
        check_interval=str(config.check_interval) if config and config.check_interval else None,
        dry_run_mode=config.dry_run_mode if config else None,
    )
    await publish_command(ctx, ctx.bus.subjects.scheduler_control, message)
    return message.message_id


async def publish_command(
    ctx: ApiContext, subject: str, message: RebalanceRequested | SchedulerControl | AbandonOrders
) -> None:
    try:
        await ctx.bus.publish_event(subject, message)
    except _PUBLISH_ERRORS as exc:
        raise HTTPException(
            503, f"the message bus did not accept the command ({type(exc).__name__}); try again"
        ) from None


async def scheduler_status(ctx: ApiContext, who: Principal) -> dict[str, Any]:
    """The scheduler's state (migration 003's ``scheduler_state``, when present) and the user's
    schedule."""
    async with ctx.tx(who.user_id) as conn:
        state: dict[str, Any] = {}
        if await conn.fetchval("SELECT to_regclass('scheduler_state') IS NOT NULL"):
            row = await conn.fetchrow("SELECT * FROM scheduler_state LIMIT 1")
            state = dict(row) if row else {}
        schedule_rows = await conn.fetch(
            "SELECT id, name, rebalance_interval, last_rebalanced_at, next_rebalance_at FROM portfolios"
            " WHERE rebalance_enabled ORDER BY next_rebalance_at NULLS LAST, id"
        )
        active = await conn.fetchval("SELECT count(*) FROM portfolios WHERE active_run_id IS NOT NULL")
    is_running = bool(state.get("is_running", False))
    check_interval = state.get("check_interval")
    return {
        "status": {
            "is_running": is_running,
            "config": {
                "enabled": bool(state.get("enabled", is_running)),
                "check_interval": None if check_interval is None else str(check_interval),
                "dry_run_mode": bool(state.get("dry_run_mode", False)),
            },
            "active_tasks": active,
        },
        "schedule": [dict(r) for r in schedule_rows],
    }
