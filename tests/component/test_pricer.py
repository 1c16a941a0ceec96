"""The pricer's message handling on TestNatsBroker against the paper exchange in PostgreSQL:
a due run in, a valuation out, or the run's failure when it cannot be valued."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import asyncpg

from contracts.envelope import derived_id
from contracts.v1 import PortfolioValued, RebalanceCompleted
from services.pricer.app import build
from tests.component.harness import record, serving, settings_for
from tests.component.samples import due
from tests.component.samples import strategy as make_strategy
from tests.support.pipeline import due_event, seed_portfolio


async def test_a_due_run_is_valued_from_the_accounts_balances_and_prices(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    seeded = await seed_portfolio(db_pool, weights={"BTC": 60, "ETH": 40}, balances={"USD": "1000", "BTC": "0.01"})
    runtime, _app = build(settings_for(namespace, database_url))
    recorder = record(runtime)
    message = due_event(seeded)
    async with serving(runtime, db_pool):
        await runtime.bus.publish_event(runtime.subjects.rebalance_due, message)

    assert recorder.on(runtime.subjects.rebalance_completed) == []
    [published] = recorder.on(runtime.subjects.portfolio_valued)
    valued = PortfolioValued.model_validate_json(published.body)
    assert published.msg_id == valued.message_id == derived_id(message.run_id, "valued")
    assert valued.causation_id == message.message_id and valued.correlation_id == message.run_id
    assert valued.strategy == message.strategy
    holdings = {h.asset: h.total for h in valued.holdings}
    assert holdings["USD"] == Decimal("1000") and holdings["BTC"] == Decimal("0.01")
    assert {"BTC", "ETH"} <= set(valued.prices)
    assert valued.total_value == Decimal("1000") + Decimal("0.01") * valued.prices["BTC"]
    assert {"BTC/USD", "ETH/USD"} <= {m.symbol for m in valued.markets}
    assert isinstance(published.json()["total_value"], str)


async def test_a_target_asset_without_a_price_fails_the_run(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    seeded = await seed_portfolio(db_pool, weights={"BTC": 50, "NOPECOIN": 50}, balances={"USD": "1000"})
    runtime, _app = build(settings_for(namespace, database_url))
    recorder = record(runtime)
    message = due_event(seeded)
    async with serving(runtime, db_pool):
        await runtime.bus.publish_event(runtime.subjects.rebalance_due, message)

    assert recorder.on(runtime.subjects.portfolio_valued) == []
    [published] = recorder.on(runtime.subjects.rebalance_completed)
    failed = RebalanceCompleted.model_validate_json(published.body)
    assert published.msg_id == failed.message_id == derived_id(message.run_id, "completed")
    assert failed.status == "failed" and not failed.success
    assert failed.run_id == message.run_id and failed.causation_id == message.message_id
    [error] = failed.errors
    assert (error.stage, error.code) == ("pricer", "missing_price")
    assert "NOPECOIN" in error.message and failed.reason == error.message


async def test_an_unknown_exchange_connection_fails_the_run(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    runtime, _app = build(settings_for(namespace, database_url))
    recorder = record(runtime)
    message = due(make_strategy(connection_id=str(uuid.uuid4())))
    async with serving(runtime, db_pool):
        await runtime.bus.publish_event(runtime.subjects.rebalance_due, message)

    [failed] = recorder.models(runtime.subjects.rebalance_completed, RebalanceCompleted)
    assert failed.status == "failed"
    assert [(e.stage, e.code) for e in failed.errors] == [("pricer", "unknown_connection")]
    assert recorder.on(runtime.subjects.portfolio_valued) == []


async def test_a_redelivered_due_run_yields_the_same_valuation_id(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    seeded = await seed_portfolio(db_pool, weights={"BTC": 50, "ETH": 50}, balances={"USD": "500"})
    runtime, _app = build(settings_for(namespace, database_url))
    recorder = record(runtime)
    message = due_event(seeded)
    async with serving(runtime, db_pool):
        await runtime.bus.publish_event(runtime.subjects.rebalance_due, message)
        await runtime.bus.publish_event(runtime.subjects.rebalance_due, message)

    first, second = recorder.on(runtime.subjects.portfolio_valued)
    assert first.msg_id == second.msg_id == derived_id(message.run_id, "valued")


async def test_preview_values_a_portfolio_on_request(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    seeded = await seed_portfolio(db_pool, weights={"BTC": 50, "ETH": 50}, balances={"USD": "500"})
    runtime, _app = build(settings_for(namespace, database_url))
    message = due_event(seeded)
    missing = due(make_strategy(connection_id=str(uuid.uuid4())))
    async with serving(runtime, db_pool) as broker:
        rpc = runtime.subjects.rpc_value_portfolio
        answer = json.loads((await broker.request(message.model_dump_json(), rpc)).body)
        refused = json.loads(
            (await broker.request(missing.model_dump_json(), rpc)).body
        )

    assert answer["run_id"] == message.run_id and Decimal(answer["total_value"]) == Decimal("500")
    assert refused["code"] == "unknown_connection" and "does not exist" in refused["error"]
