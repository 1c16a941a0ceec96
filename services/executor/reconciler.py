"""Resolves orders of unknown outcome: looked up by client order id, never resent; one still
resting after its run ended is canceled.

Runs at start-up and then periodically. An order may be left unresolved by a crash mid-call, or by
a run that stopped (its key refused, its plan dead-lettered or superseded) before the exchange said
how the order ended. What the exchange says is recorded together with the event that reports the
leg to the ledger, so a fill found after its run completed still reaches the history. A run's retry
that finds the leg resolved reports it again under the same event ids, which changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from contracts.subjects import Subjects
from contracts.v1 import OrdersReported, RunError
from contracts.v1.strategy import LEG_ABANDONED
from services.common import metrics
from services.common.bus import OutboxRelay
from services.common.db import OutboxMessage
from services.common.exchanges.accounts import ExchangeAccounts
from services.common.exchanges.port import ExchangeError, ExchangePort, OrderResult
from services.executor import intents, reports, sizing

log = logging.getLogger("services.executor.reconciler")


def leg_report(
    row: Mapping[str, Any],
    found: OrderResult | None,
    *,
    exchange_id: str,
    now: datetime,
    abandoned: str | None = None,
) -> tuple[str, OrdersReported]:
    """The final state of a stale leg and the event that reports it (``row``: the leg's intent
    with its run's fields as the ledger recorded them): as the exchange closed it, or, when
    ``found`` is None, not placed (an exchange that lists every order at once does not have it),
    or, when ``abandoned`` says why, given up on by its owner with its outcome unknown."""
    error: RunError | None
    fill = None
    if abandoned is not None:
        state, error = "abandoned", reports.leg_error(
            row["leg"],
            LEG_ABANDONED,
            f"outcome unknown: abandoned by its owner on {now:%Y-%m-%d %H:%M} UTC ({abandoned}); order"
            f" {row['client_order_id']} may have traded on {exchange_id}: check the account's history there",
        )
    elif found is None:
        state, error = "failed", reports.leg_error(
            row["leg"], "not_placed", f"not placed: {exchange_id} has no order {row['client_order_id']}"
        )
    else:
        state, error = reports.ended(row["leg"], row["symbol"], found.status, found.filled)
        prices = {asset: Decimal(price) for asset, price in (row["prices"] or {}).items()}
        prices.setdefault(row["quote_currency"], Decimal(1))
        fill = sizing.fill_of(found, row["symbol"].partition("/")[2], prices)
    order = reports.reported_order(
        row["run_id"],
        leg=row["leg"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side="buy" if row["side"] == "buy" else "sell",
        order_type="limit" if row["order_type"] == "limit" else "market",
        amount=(found.amount if found else None) or row["amount"],  # as the engine reports it: what was sent
        state=state,
        fill=fill,
        error=error,
        dry_run=False,  # a dry run's legs are simulated, never sent
        exchange_id=exchange_id,
        now=now,
    )
    stage = {
        "correlation_id": row["run_id"],
        "run_id": row["run_id"],
        "portfolio_id": row["portfolio_id"],
        "user_id": row["user_id"],
        "triggered_by": row["triggered_by"],
        "started_at": row["started_at"],
    }
    return state, reports.orders_reported(stage, [order], reconciled=True)


def never_placed(row: Mapping[str, Any], lists_new_orders_at_once: bool) -> bool:
    """Whether a leg the exchange does not have was never placed: it was sent by a run that has
    ended, to an exchange that lists every order the moment it takes it (the paper exchange), so
    the request never reached it, and nobody will send it now. Elsewhere a miss proves nothing (an
    order index may lag, closed orders are listed for a while only): the leg is looked up again."""
    return lists_new_orders_at_once and row["state"] == "sending" and row["run_status"] not in (None, "running")


async def cancel_orphan(exchange: ExchangePort, row: Mapping[str, Any], found: OrderResult) -> OrderResult:
    """An order still resting after its run ended: nobody follows it any more, and a newer run of
    the portfolio must not meet it, so it is canceled; the cancel's answer says what it filled."""
    if not found.exchange_order_id:
        return found
    log.warning(
        "reconciler: order %s of run %s still open after its run ended: canceling it",
        row["client_order_id"],
        row["run_id"],
    )
    return await exchange.cancel_order(row["symbol"], found.exchange_order_id)


async def look_up(accounts: ExchangeAccounts, row: Mapping[str, Any]) -> tuple[str, bool, OrderResult | None]:
    """Look a leg up by its client order id (``row``: as ``leg_report`` takes it), canceling it if
    it still rests after its run ended: the exchange's id, whether it lists new orders at once, and
    the order as it now stands (None: not listed). Raises ExchangeError when it cannot say."""
    async with accounts.use(row["connection_id"]) as exchange:
        found = await exchange.fetch_order_by_client_id(
            row["symbol"], row["client_order_id"], placed_after=row["started_at"]
        )
        if found is not None and found.status == "open" and row["run_status"] != "running":
            found = await cancel_orphan(exchange, row, found)
        return exchange.exchange_id, exchange.lists_new_orders_at_once, found


async def resolve_reported(
    pool: asyncpg.Pool,
    subjects: Subjects,
    row: Mapping[str, Any],
    found: OrderResult | None,
    *,
    exchange_id: str,
    abandoned: str | None = None,
) -> tuple[str, bool]:
    """Record a stale leg's final state (``leg_report``) with the event that reports it, in one
    statement: the state, and False if the leg was resolved meanwhile by someone who reported it."""
    state, report = leg_report(row, found, exchange_id=exchange_id, now=datetime.now(UTC), abandoned=abandoned)
    message = OutboxMessage(subjects.orders_reported, report.message_id, report.model_dump_json().encode())
    result = intents.result_json(found) if found else None
    return state, await intents.resolve(pool, row["client_order_id"], state, result, message)


async def reconcile_once(
    pool: asyncpg.Pool,
    accounts: ExchangeAccounts,
    relay: OutboxRelay,
    subjects: Subjects,
    *,
    older_than_seconds: float,
    max_wait_seconds: float = intents.MAX_LOOKUP_WAIT_SECONDS,
    batch: int = 500,
) -> int:
    """One pass over up to ``batch`` legs of unknown outcome due a look (see
    ``intents.STALE_UNRESOLVED``); returns how many it resolved."""
    resolved, unanswered = 0, []
    rows = await intents.stale_unresolved(pool, older_than_seconds, batch, max_wait_seconds=max_wait_seconds)
    for row in rows:
        cid = row["client_order_id"]
        if row["started_at"] is None:
            # Its report needs the run's fields: the ledger is behind; looked up on a later pass.
            log.info("reconciler: order %s waits for run %s to reach the ledger", cid, row["run_id"])
            unanswered.append(cid)
            continue
        try:
            exchange_id, lists_at_once, found = await look_up(accounts, row)
        except ExchangeError as exc:
            log.warning("reconciler: cannot look up %s yet: %s", cid, exc)
            unanswered.append(cid)
            continue
        except Exception:
            # One leg's unforeseen failure must not stop the pass: the leg goes to the back of the
            # queue, or it would be first again on every pass and the legs behind it never looked at.
            log.exception("reconciler: looking up %s failed", cid)
            unanswered.append(cid)
            continue
        if (found.status == "open") if found is not None else not never_placed(row, lists_at_once):
            unanswered.append(cid)  # still working, or not seen by the exchange yet: looked up again later
            continue
        state, _ = await resolve_reported(pool, subjects, row, found, exchange_id=exchange_id)
        log.info("reconciler: order %s of run %s resolved as %s", cid, row["run_id"], state)
        resolved += 1
    await intents.looked_at(pool, unanswered)
    if resolved:
        relay.wake()
    return resolved


async def run_reconciler(
    pool: asyncpg.Pool,
    accounts: ExchangeAccounts,
    relay: OutboxRelay,
    subjects: Subjects,
    stop: asyncio.Event,
    *,
    interval: float = 30.0,
    older_than_seconds: float = 60.0,
    max_wait_seconds: float = intents.MAX_LOOKUP_WAIT_SECONDS,
) -> None:
    while not stop.is_set():
        try:
            await reconcile_once(
                pool, accounts, relay, subjects,
                older_than_seconds=older_than_seconds, max_wait_seconds=max_wait_seconds,
            )
            metrics.set_unresolved_orders(*await intents.unresolved_summary(pool))
        except Exception:
            log.exception("reconciler pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
