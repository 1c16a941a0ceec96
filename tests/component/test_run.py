"""One dry run through pricer, planner, executor and ledger on a single TestNatsBroker: the
whole message flow in-process, without a NATS server."""

from __future__ import annotations

from contextlib import AsyncExitStack
from decimal import Decimal

import asyncpg
from faststream.nats import TestNatsBroker

from services.common.exchanges.paper import PaperExchange
from services.common.runtime import Runtime
from services.executor.app import ExecutorSettings
from services.executor.app import build as build_executor
from services.ledger.app import build as build_ledger
from services.planner.app import build as build_planner
from services.pricer.app import build as build_pricer
from tests.component.harness import settings_for, settle
from tests.support.pipeline import due_event, seed_portfolio


async def test_a_dry_run_flows_from_due_to_history_without_touching_the_account(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    seeded = await seed_portfolio(db_pool, weights={"BTC": 50, "ETH": 50}, balances={"USD": "2000"}, dry_run=True)
    settings = settings_for(namespace, database_url)
    runtimes: list[Runtime] = [
        build_ledger(settings)[0],
        build_pricer(settings)[0],
        build_planner(settings)[0],
        build_executor(ExecutorSettings(**settings.model_dump()))[0],
    ]
    for runtime in runtimes:
        runtime._pool = runtime.bus.pool = db_pool
        for hook in runtime._startup_hooks:
            await hook()
    due = due_event(seeded)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(TestNatsBroker(*(r.bus.broker for r in runtimes)))
        await runtimes[1].bus.publish_event(settings.subjects.rebalance_due, due)
        for runtime in runtimes:
            await settle(runtime)
    for runtime in runtimes:
        for hook in runtime._shutdown_hooks:
            await hook()

    run = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", due.run_id)
    assert run is not None and run["status"] == "succeeded" and run["dry_run"] is True
    assert (run["orders_planned"], run["orders_executed"]) == (2, 2)
    trades = await db_pool.fetch("SELECT asset, dry_run FROM trades WHERE run_id = $1::uuid ORDER BY asset", due.run_id)
    assert [(t["asset"], t["dry_run"]) for t in trades] == [("BTC", True), ("ETH", True)]
    balances = await PaperExchange(db_pool, seeded.account).fetch_balance()
    assert balances["USD"].total == Decimal("2000") and "BTC" not in balances
