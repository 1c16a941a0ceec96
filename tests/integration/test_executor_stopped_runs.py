"""A run that stops early still accounts for every planned leg, from what is stored. A plan
delivered again after the scheduler failed its run for its lease (it was being retried through an
exchange outage) trades nothing more, whether a newer run holds the portfolio already or none does
yet; its completion reports the legs an earlier attempt finished, records the legs never sent as
not placed, and names the legs that may be on the exchange, which stay unresolved for the
reconciler. A plan arriving after its run's time to trade (90 % of the lease) places nothing
either. Real PostgreSQL and the paper exchange."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

import asyncpg
import pytest

from contracts.envelope import derived_id
from contracts.subjects import Subjects
from contracts.v1 import OrdersReported, PlanCreated, RebalanceCompleted
from services.common.bus import Bus, OutboxRelay
from services.common.exchanges.accounts import ExchangeAccounts
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.executor import intents
from services.executor.engine import Executor
from services.planner.app import plan_for
from tests.component.samples import valued
from tests.support.pipeline import seed_portfolio

pytestmark = pytest.mark.integration

FILLED = {
    "exchange_order_id": "x-1",
    "status": "closed",
    "amount": "0.1",
    "filled": "0.1",
    "average_price": "50000",
    "cost": "5000",
    "fee": "5",
    "fee_currency": "USD",
    "fee_known": True,
}


async def stopped_plan(pool: asyncpg.Pool, how: str) -> tuple[PlanCreated, str]:
    """A two-leg plan (sell BTC, buy ETH) on a paper account, whose run's lease expired: the
    portfolio is now held by another run ("superseded") or by none yet ("released"). Returns the
    plan and its paper account."""
    seeded = await seed_portfolio(
        pool, weights={"BTC": 40, "ETH": 40, "USD": 20}, balances={"BTC": "0.3", "USD": "1000"}
    )
    plan = plan_for(valued(seeded.strategy, {"BTC": "0.3", "USD": "1000"}))
    assert [(o.leg, o.side, o.base) for o in plan.orders] == [(0, "sell", "BTC"), (1, "buy", "ETH")]
    await pool.execute(
        "INSERT INTO expired_runs (run_id, portfolio_id) VALUES ($1::uuid, $2::uuid)", plan.run_id, plan.portfolio_id
    )
    if how == "superseded":
        await pool.execute(
            "UPDATE portfolios SET active_run_id = $1 WHERE id = $2::uuid", uuid.uuid4(), plan.portfolio_id
        )
    return plan, seeded.account


async def store_attempt(pool: asyncpg.Pool, plan: PlanCreated, states: dict[int, str]) -> dict[int, str]:
    """The intents an earlier attempt left, in ``states`` by leg; returns their client order ids."""
    ids = {o.leg: client_order_id_for(plan.strategy.exchange_id, plan.run_id, o.leg) for o in plan.orders}
    await intents.ensure_intents_many(pool, [intents.WantedIntents(plan, ids)])
    for leg, state in states.items():
        await pool.execute(
            "UPDATE order_intents SET state = $2, result = $3::jsonb WHERE client_order_id = $1",
            ids[leg],
            state,
            FILLED if state == "filled" else None,
        )
    return ids


async def queued(pool: asyncpg.Pool, subject: str, run_id: str) -> list[bytes]:
    """The run's messages waiting in the executor's outbox on ``subject``."""
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE producer = 'executor' AND subject = $1"
        " AND convert_from(payload, 'UTF8') LIKE $2 ORDER BY id",
        subject,
        f"%{run_id}%",
    )
    return [bytes(r["payload"]) for r in rows]


@pytest.mark.parametrize("how", ["superseded", "released"])
@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        # leg -> state an earlier attempt left  /  leg -> (state after, outcome reported or "unknown")
        ({0: "filled", 1: "sending"}, {0: ("filled", "filled"), 1: ("sending", "unknown")}),
        ({0: "sending", 1: "intent"}, {0: ("sending", "unknown"), 1: ("failed", "failed")}),
        ({0: "filled", 1: "intent"}, {0: ("filled", "filled"), 1: ("failed", "failed")}),
    ],
)
async def test_a_run_past_its_lease_accounts_for_every_leg_and_trades_nothing(
    db_pool: asyncpg.Pool, namespace: str, earlier: dict[int, str], expected: dict[int, tuple[str, str]], how: str
) -> None:
    subjects = Subjects(namespace)
    plan, account = await stopped_plan(db_pool, how)
    ids = await store_attempt(db_pool, plan, earlier)
    relay = OutboxRelay(cast(Bus, None), db_pool, "executor")  # never flushed here: the outbox is read
    executor = Executor(db_pool, ExchangeAccounts(db_pool), relay, subjects)

    await executor.execute(plan)
    await executor.execute(plan)  # delivered again: nothing changes

    stored = await intents.run_intents(db_pool, plan.run_id)
    assert {leg: i.state for leg, i in stored.items()} == {leg: state for leg, (state, _) in expected.items()}
    reports = [
        OrdersReported.model_validate_json(p) for p in await queued(db_pool, subjects.orders_reported, plan.run_id)
    ]
    reported = {o.leg: o for r in reports for o in r.orders}
    assert {leg: o.outcome for leg, o in reported.items()} == {
        leg: outcome for leg, (_, outcome) in expected.items() if outcome != "unknown"
    }
    for leg, order in reported.items():
        assert order.event_id == derived_id(plan.run_id, "order", leg, stored[leg].state)
        if order.outcome == "filled":
            assert order.fill.filled == Decimal("0.1") and order.fill.exchange_order_id == "x-1"
        else:
            assert order.error is not None and order.error.code == "not_placed"

    [payload] = await queued(db_pool, subjects.rebalance_completed, plan.run_id)
    done = RebalanceCompleted.model_validate_json(payload)
    assert done.status == "failed" and "no longer holds the portfolio" in done.reason
    unknown = [leg for leg, (_, outcome) in expected.items() if outcome == "unknown"]
    assert [(e.leg, e.code) for e in done.errors if e.code == "outcome_unknown"] == [
        (leg, "outcome_unknown") for leg in unknown
    ]
    for leg in unknown:
        assert ids[leg] in next(e.message for e in done.errors if e.leg == leg)
    assert done.orders_executed == sum(outcome == "filled" for _, outcome in expected.values())
    assert done.orders_failed == sum(outcome == "failed" for _, outcome in expected.values())
    assert how in [e.code for e in done.errors]
    assert await db_pool.fetchval("SELECT count(*) FROM paper_orders WHERE account = $1", account) == 0


async def test_a_run_whose_portfolio_is_unclaimed_but_whose_lease_did_not_expire_trades(
    db_pool: asyncpg.Pool, namespace: str
) -> None:
    # The control: the same plan, its run not failed by the scheduler, is placed.
    plan, account = await stopped_plan(db_pool, "released")
    await db_pool.execute("DELETE FROM expired_runs WHERE run_id = $1::uuid", plan.run_id)
    relay = OutboxRelay(cast(Bus, None), db_pool, "executor")
    await Executor(db_pool, ExchangeAccounts(db_pool), relay, Subjects(namespace)).execute(plan)
    stored = await intents.run_intents(db_pool, plan.run_id)
    assert {leg: i.state for leg, i in stored.items()} == {0: "filled", 1: "filled"}
    assert await db_pool.fetchval("SELECT count(*) FROM paper_orders WHERE account = $1", account) == 2


async def test_a_plan_arriving_after_its_runs_time_to_trade_places_nothing(
    db_pool: asyncpg.Pool, namespace: str
) -> None:
    # Claimed 15 minutes ago (the plan waited out an outage): past 90 % of the 900 s lease, the
    # executor sends nothing, on the paper exchange's batch path too, and says why.
    seeded = await seed_portfolio(
        db_pool, weights={"BTC": 40, "ETH": 40, "USD": 20}, balances={"BTC": "0.3", "USD": "1000"}
    )
    plan = plan_for(valued(seeded.strategy, {"BTC": "0.3", "USD": "1000"}))
    plan = plan.model_copy(update={"started_at": datetime.now(UTC) - timedelta(seconds=900)})
    subjects = Subjects(namespace)
    relay = OutboxRelay(cast(Bus, None), db_pool, "executor")
    await Executor(db_pool, ExchangeAccounts(db_pool), relay, subjects, lease_seconds=900).execute(plan)

    assert await db_pool.fetchval("SELECT count(*) FROM paper_orders WHERE account = $1", seeded.account) == 0
    stored = await intents.run_intents(db_pool, plan.run_id)
    assert {leg: i.state for leg, i in stored.items()} == {0: "failed", 1: "failed"}
    [payload] = await queued(db_pool, subjects.rebalance_completed, plan.run_id)
    done = RebalanceCompleted.model_validate_json(payload)
    assert done.status == "failed" and done.orders_failed == 2 and done.orders_executed == 0
    [stop] = [e for e in done.errors if e.code == "out_of_time"]
    assert "past its time to trade (810s of its 900s lease" in stop.message
