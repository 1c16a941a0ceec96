"""Resolves orders of unknown outcome left by a crash: looked up by client order id, never resent.

Runs at start-up and then periodically. It only records what the exchange says; the plan's
redelivery (or the next attempt) emits the leg's event from the recorded outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from services.common.exchanges.accounts import ExchangeAccounts
from services.common.exchanges.port import ExchangeError
from services.executor import intents

log = logging.getLogger("services.executor.reconciler")


async def reconcile_once(pool: asyncpg.Pool, accounts: ExchangeAccounts, *, older_than_seconds: float) -> int:
    resolved = 0
    for row in await intents.stale_sending(pool, older_than_seconds):
        try:
            async with accounts.use(row["connection_id"]) as exchange:
                found = await exchange.fetch_order_by_client_id(row["symbol"], row["client_order_id"])
        except ExchangeError as exc:
            log.warning("reconciler: cannot look up %s yet: %s", row["client_order_id"], exc)
            continue
        if found is None or found.status == "open":
            continue  # never seen by the exchange, or still working: the run's retry handles it
        state = "filled" if found.filled > 0 else "canceled"
        await intents.resolve(pool, row["client_order_id"], state, intents.result_json(found))
        log.info(
            "reconciler: order %s of run %s resolved as %s", row["client_order_id"], row["run_id"], state
        )
        resolved += 1
    return resolved


async def run_reconciler(
    pool: asyncpg.Pool,
    accounts: ExchangeAccounts,
    stop: asyncio.Event,
    *,
    interval: float = 30.0,
    older_than_seconds: float = 60.0,
) -> None:
    while not stop.is_set():
        try:
            await reconcile_once(pool, accounts, older_than_seconds=older_than_seconds)
        except Exception:
            log.exception("reconciler pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
