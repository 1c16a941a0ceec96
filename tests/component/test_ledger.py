"""The ledger's message handling on TestNatsBroker with PostgreSQL: every event of a run becomes
history rows once, however often and in whatever order it arrives."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import asyncpg

from contracts.envelope import Envelope, derived_id
from contracts.subjects import Subjects
from contracts.v1 import (
    Fill,
    Holding,
    OrderFilled,
    OrdersReported,
    PlanCreated,
    RebalanceCompleted,
    RebalanceDue,
    ReportedOrder,
)
from services.ledger.app import build
from services.planner.app import plan_for
from tests.component.harness import serving, settings_for
from tests.component.samples import due, strategy, valued

COUNTS = {
    "runs": "SELECT count(*) FROM rebalance_runs WHERE id = $1::uuid",
    "orders": "SELECT count(*) FROM orders WHERE run_id = $1::uuid",
    "trades": "SELECT count(*) FROM trades WHERE run_id = $1::uuid",
    "snapshots": "SELECT count(*) FROM portfolio_snapshots WHERE run_id = $1::uuid",
    "activity": "SELECT count(*) FROM activity_log WHERE run_id = $1::uuid",  # fills are not logged twice
    "feed": "SELECT count(*) FROM activity_feed WHERE run_id = $1::uuid",  # ... but are in the feed
}
ROWS = {"runs": 1, "orders": 2, "trades": 2, "snapshots": 2, "activity": 4, "feed": 6}


def run_events(subjects: Subjects) -> list[tuple[str, Envelope]]:
    """A dry run of two buys, event by event, as the services would emit them."""
    strat = strategy(dry_run=True)
    start: RebalanceDue = due(strat)
    value = valued(strat, {"USD": "10000"}, run_id=start.run_id)
    plan: PlanCreated = plan_for(value)
    stage = {
        **plan.caused(),
        "run_id": plan.run_id,
        "portfolio_id": plan.portfolio_id,
        "user_id": plan.user_id,
        "triggered_by": plan.triggered_by,
        "started_at": plan.started_at,
    }
    fills = [
        OrderFilled(
            message_id=derived_id(plan.run_id, "order", o.leg, "filled"),
            **stage,  # type: ignore[arg-type]
            dry_run=True,
            exchange_id="paper",
            leg=o.leg,
            client_order_id=f"rb-{plan.run_id[:8]}-{o.leg}",
            symbol=o.symbol,
            side=o.side,
            amount=o.amount,
            fill=Fill(filled=o.amount, average_price=o.price, cost=o.value, fee=o.fee, fee_currency="USD",
                      value=o.value),
        )
        for o in plan.orders
    ]
    traded = sum((o.value for o in plan.orders), Decimal(0))
    fees = sum((o.fee for o in plan.orders), Decimal(0))
    cash_after = Decimal(10000) - traded - fees
    done = RebalanceCompleted(
        message_id=derived_id(plan.run_id, "completed"),
        **stage,  # type: ignore[arg-type]
        status="succeeded",
        dry_run=True,
        quote_currency="USD",
        reason=plan.reason,
        portfolio_value=plan.portfolio_value,
        value_after=plan.portfolio_value - fees,
        holdings_after=[Holding(asset="USD", free=cash_after, total=cash_after)],
        orders_planned=len(plan.orders),
        orders_executed=len(plan.orders),
        total_value_traded=traded,
        fees=fees,
        completed_at=plan.started_at + timedelta(seconds=2),
    )
    return [
        (subjects.rebalance_due, start),
        (subjects.portfolio_valued, value),
        (subjects.plan_created, plan),
        *((subjects.order_filled, f) for f in fills),
        (subjects.rebalance_completed, done),
    ]


async def counts(pool: asyncpg.Pool, run_id: str) -> dict[str, int]:
    return {name: await pool.fetchval(query, run_id) for name, query in COUNTS.items()}


async def test_a_run_becomes_its_history_rows(namespace: str, database_url: str, db_pool: asyncpg.Pool) -> None:
    runtime, _app = build(settings_for(namespace, database_url))
    events = run_events(runtime.subjects)
    run_id = events[0][1].correlation_id
    async with serving(runtime, db_pool):
        for subject, event in events:
            await runtime.bus.publish_event(subject, event)

    run = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", run_id)
    assert run["status"] == "succeeded" and run["success"] is True and run["dry_run"] is True
    assert run["decision"] == "rebalance" and run["portfolio_name"] == "Component"
    assert (run["orders_planned"], run["orders_executed"], run["orders_failed"]) == (2, 2, 0)
    assert run["portfolio_value"] == Decimal("10000") and run["duration_ms"] == 2000
    assert await counts(db_pool, run_id) == ROWS
    trades = await db_pool.fetch("SELECT asset, side, dry_run FROM trades WHERE run_id = $1::uuid ORDER BY asset",
                                 run_id)
    assert [(t["asset"], t["side"], t["dry_run"]) for t in trades] == [("BTC", "buy", True), ("ETH", "buy", True)]
    feed = await db_pool.fetch(
        "SELECT event_type, description FROM activity_feed WHERE run_id = $1::uuid ORDER BY created_at, id", run_id
    )
    assert [k["event_type"] for k in feed] == [
        "rebalance_triggered", "portfolio_valued", "plan_created", "order_filled", "order_filled",
        "rebalance_succeeded",
    ]
    fills = {e.symbol: e for _s, e in events if isinstance(e, OrderFilled)}
    assert sorted(k["description"] for k in feed if k["event_type"] == "order_filled") == sorted(
        f"Order executed successfully: buy {f.fill.filled} {symbol.split('/')[0]} at {f.fill.average_price}"
        f" {symbol.split('/')[1]} (simulated)"
        for symbol, f in fills.items()
    )


async def test_every_event_delivered_twice_writes_its_rows_once(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    runtime, _app = build(settings_for(namespace, database_url))
    events = run_events(runtime.subjects)
    run_id = events[0][1].correlation_id
    async with serving(runtime, db_pool):
        for subject, event in events:
            await runtime.bus.publish_event(subject, event)
        once = await counts(db_pool, run_id)
        first = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", run_id)
        for subject, event in reversed(events):
            await runtime.bus.publish_event(subject, event)

    assert await counts(db_pool, run_id) == once
    assert await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", run_id) == first
    inbox = await db_pool.fetchval(
        "SELECT count(*) FROM inbox WHERE consumer = 'ledger.events' AND message_id = ANY($1::text[])",
        [e.message_id for _s, e in events],
    )
    assert inbox == len(events)


def batched(events: list[tuple[str, Envelope]], subjects: Subjects) -> list[tuple[str, Envelope]]:
    """The same run with its order events batched: one OrdersReported per given group of fills."""
    fills = [e for _s, e in events if isinstance(e, OrderFilled)]

    def batch(group: list[OrderFilled]) -> OrdersReported:
        first = group[0]
        return OrdersReported(
            message_id=derived_id(first.run_id, "orders", ",".join(str(f.leg) for f in group)),
            correlation_id=first.correlation_id, causation_id=first.causation_id, run_id=first.run_id,
            portfolio_id=first.portfolio_id, user_id=first.user_id, triggered_by=first.triggered_by,
            started_at=first.started_at,
            orders=[
                ReportedOrder(outcome="filled", event_id=f.message_id, occurred_at=f.occurred_at, **f.facts())
                for f in group
            ],
        )

    others = [(s, e) for s, e in events if not isinstance(e, OrderFilled)]
    return [*others[:3], (subjects.orders_reported, batch(fills)), (subjects.orders_reported, batch(fills[:1])),
            *others[3:]]


async def test_batched_order_outcomes_write_the_same_history_as_single_events_once(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    """One OrdersReported for both legs, then a replay of one leg in a batch of its own (another
    message id): the rows are those of the single events, each once."""
    runtime, _app = build(settings_for(namespace, database_url))
    single = run_events(runtime.subjects)
    run_id = single[0][1].correlation_id
    async with serving(runtime, db_pool):
        for subject, event in batched(single, runtime.subjects):
            await runtime.bus.publish_event(subject, event)

    assert await counts(db_pool, run_id) == ROWS
    fills = await db_pool.fetchval(
        "SELECT count(*) FROM activity_feed WHERE run_id = $1::uuid AND event_type = 'order_filled'", run_id)
    assert fills == sum(isinstance(e, OrderFilled) for _s, e in single)


async def test_a_completion_that_arrives_first_still_ends_the_run(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    runtime, _app = build(settings_for(namespace, database_url))
    events = run_events(runtime.subjects)
    run_id = events[0][1].correlation_id
    async with serving(runtime, db_pool):
        for subject, event in reversed(events):
            await runtime.bus.publish_event(subject, event)

    run = await db_pool.fetchrow("SELECT status, decision, portfolio_name FROM rebalance_runs WHERE id = $1::uuid",
                                 run_id)
    assert (run["status"], run["decision"], run["portfolio_name"]) == ("succeeded", "rebalance", "Component")
    assert await counts(db_pool, run_id) == ROWS


async def test_the_ledger_ignores_commands_outside_the_event_subjects(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    """It subscribes to evt.> only: a manual request is the scheduler's, not history."""
    runtime, _app = build(settings_for(namespace, database_url))
    start = run_events(runtime.subjects)[0][1]
    async with serving(runtime, db_pool):
        await runtime.bus.publish_event(runtime.subjects.rebalance_request, start)

    assert await counts(db_pool, start.correlation_id) == dict.fromkeys(COUNTS, 0)
