"""What every fault test does: a fresh database, portfolios the scheduler finds due, waiting
for runs to finish and the bus to settle, and the exactly-once checks."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import nats

from services.common.db import TRANSIENT_DB_ERRORS, create_pool
from services.common.exchanges.paper import account_orders
from services.common.migrate import apply_migrations
from tests.support.pipeline import Seeded, seed_portfolio

WEIGHTS = {"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}
LEGS = len(WEIGHTS)  # USD 10000 into 40/30/20/10: four buys
# Redelivery of what a killed process held, in seconds: the services' own ack_wait (60-120 s)
# is shortened on the test stream (processes.shorten_ack_waits) so a crash recovers in seconds.
ACK_WAIT_SECONDS = 3.0
T = TypeVar("T")
# A fault the test injected may make a check itself fail for a while: that is "not yet".
NOT_YET: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, nats.errors.Error)


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new, migrated database on the server ``admin_dsn`` points at; dropped afterwards.

    The fault suite runs a real scheduler, which claims every due portfolio of its database:
    a database of its own keeps it away from other tests' portfolios.
    """
    name = f"rb_fault_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        await apply_migrations(dsn)
        yield dsn
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def pool_for(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def seed(pool: asyncpg.Pool, name: str = "Fault portfolio") -> Seeded:
    return await seed_portfolio(pool, weights=WEIGHTS, balances={"USD": "10000"}, threshold="5", name=name)


async def make_due(pool: asyncpg.Pool, *portfolios: Seeded) -> None:
    """Enable the portfolios (weekly schedule) and make them due now: the scheduler claims them."""
    await pool.execute(
        "UPDATE portfolios SET rebalance_enabled = true, next_rebalance_at = now() - interval '1 second'"
        " WHERE id = ANY($1::uuid[])",
        [p.portfolio_id for p in portfolios],
    )


async def eventually(
    check: Callable[[], Awaitable[T]],
    what: str,
    *,
    timeout: float = 60.0,
    interval: float = 0.2,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns a truthy value; the database or NATS being away (a fault
    the test injected) counts as 'not yet'."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = await check()
            if value:
                return value
        except NOT_YET as exc:
            last_error = exc
        if time.monotonic() > deadline:
            extra = diagnostics() if diagnostics else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 f" (last error: {last_error!r})\n{extra}")
        await asyncio.sleep(interval)


async def runs_finished(pool: asyncpg.Pool, portfolios: list[Seeded]) -> bool:
    """Every portfolio has a finished run in history and its claim released by the scheduler."""
    ids = [p.portfolio_id for p in portfolios]
    done = await pool.fetchval(
        """SELECT count(*) FROM portfolios p
           WHERE p.id = ANY($1::uuid[]) AND p.active_run_id IS NULL AND p.last_rebalanced_at IS NOT NULL
             AND EXISTS (SELECT 1 FROM rebalance_runs r WHERE r.portfolio_id = p.id AND r.status <> 'running')""",
        ids,
    )
    return int(done) == len(ids)


async def bus_settled(nats_url: str, stream: str, pool: asyncpg.Pool) -> bool:
    """No consumer of the stream has anything pending or unacknowledged, and no outbox row waits."""
    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
    try:
        infos = await nc.jetstream().consumers_info(stream)
    finally:
        await nc.close()
    busy = [i.name for i in infos if (i.num_pending or 0) > 0 or (i.num_ack_pending or 0) > 0]
    waiting = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return not busy and int(waiting) == 0


async def wait_done(
    pool: asyncpg.Pool,
    nats_url: str,
    stream: str,
    portfolios: list[Seeded],
    *,
    timeout: float = 90.0,
    diagnostics: Callable[[], str] | None = None,
) -> None:
    """Until every run finished and the bus is quiet: a late duplicate would have landed by then."""
    await eventually(lambda: runs_finished(pool, portfolios), f"{len(portfolios)} run(s) to finish",
                     timeout=timeout, diagnostics=diagnostics)
    await eventually(lambda: bus_settled(nats_url, stream, pool), "the bus to settle",
                     timeout=timeout, diagnostics=diagnostics)


async def assert_rebalanced_once(pool: asyncpg.Pool, seeded: Seeded, *, legs: int = LEGS) -> dict[str, Any]:
    """One run, one order on the exchange per leg, every trade and event recorded once, the
    schedule advanced once. Returns the run row."""
    runs = await pool.fetch("SELECT * FROM rebalance_runs WHERE portfolio_id = $1::uuid", seeded.portfolio_id)
    assert len(runs) == 1, f"expected one run of {seeded.strategy.name}, found {[dict(r) for r in runs]}"
    run = runs[0]
    assert run["status"] == "succeeded", dict(run)
    assert (run["orders_planned"], run["orders_executed"], run["orders_failed"]) == (legs, legs, 0), dict(run)
    run_id = run["id"]

    intents = await pool.fetch("SELECT client_order_id, leg, state, amount FROM order_intents WHERE run_id = $1",
                               run_id)
    intent_ids = {r["client_order_id"] for r in intents}
    assert len(intent_ids) == legs and {r["state"] for r in intents} == {"filled"}, [dict(r) for r in intents]
    # A restart must not shrink the legs still to place: each is sent at (nearly) its planned size,
    # only the executor's small funding margin below it.
    planned = {o["leg"]: Decimal(o["amount"]) for o in run["orders"]}
    for intent in intents:
        assert intent["amount"] >= planned[intent["leg"]] * Decimal("0.99"), (dict(intent), planned)

    on_exchange = Counter(o.client_order_id for o in await account_orders(pool, seeded.account))
    assert on_exchange == Counter(dict.fromkeys(intent_ids, 1)), f"orders on the exchange: {on_exchange}"

    trades = Counter(r["client_order_id"] for r in await pool.fetch(
        "SELECT client_order_id FROM trades WHERE run_id = $1", run_id))
    assert trades == Counter(dict.fromkeys(intent_ids, 1)), f"trades: {trades}"
    orders = await pool.fetchval("SELECT count(*) FROM orders WHERE run_id = $1", run_id)
    assert orders == legs

    activity = Counter(r["event_type"] for r in await pool.fetch(
        "SELECT event_type FROM activity_feed WHERE run_id = $1", run_id))
    for event_type in ("rebalance_triggered", "portfolio_valued", "plan_created", "rebalance_succeeded"):
        assert activity[event_type] == 1, activity
    assert activity["order_filled"] == legs, activity
    snapshots = Counter(r["kind"] for r in await pool.fetch(
        "SELECT kind FROM portfolio_snapshots WHERE run_id = $1", run_id))
    assert snapshots == Counter({"before": 1, "after": 1}), snapshots

    schedule = await pool.fetchrow(
        "SELECT active_run_id, last_rebalanced_at, next_rebalance_at, next_rebalance_at > now() + interval '1 day'"
        " AS advanced FROM portfolios WHERE id = $1::uuid",
        seeded.portfolio_id,
    )
    assert schedule["active_run_id"] is None and schedule["last_rebalanced_at"] is not None, dict(schedule)
    assert schedule["advanced"], dict(schedule)
    # Set from the one completion the scheduler applied (a second one would carry its own time).
    assert schedule["last_rebalanced_at"] == run["executed_at"], (dict(schedule), run["executed_at"])
    return dict(run)
