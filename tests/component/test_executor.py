"""The executor's message handling on TestNatsBroker with PostgreSQL: a plan in, order events and
exactly one completion out (through its outbox)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg

from contracts.envelope import derived_id
from contracts.v1 import OrderEvent, OrderFilled, OrdersReported, PlanCreated, RebalanceCompleted
from services.common.runtime import Runtime
from services.executor.app import ExecutorSettings, build
from services.planner.app import plan_for
from tests.component.harness import Recorder, record, serving, settings_for
from tests.component.samples import strategy, valued


def executor(namespace: str, database_url: str) -> tuple[Runtime, Recorder]:
    runtime, _app = build(ExecutorSettings(**settings_for(namespace, database_url).model_dump()))
    return runtime, record(runtime)


def reported(runtime: Runtime, recorder: Recorder) -> list[OrderEvent]:
    """Every order event the executor reported (it batches them in OrdersReported messages)."""
    batches = recorder.models(runtime.subjects.orders_reported, OrdersReported)
    return [event for batch in batches for event in batch.order_events()]


def order_events(recorder: Recorder) -> list[str]:
    return [
        order.outcome
        for m in recorder.messages
        if m.subject.endswith(".v1.evt.order.reported")
        for order in OrdersReported.model_validate_json(m.body).orders
    ]


async def test_a_dry_run_plan_is_simulated_and_completed_once(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    plan = plan_for(valued(strategy(dry_run=True), {"USD": "10000"}))
    assert plan.decision == "rebalance" and len(plan.orders) == 2
    runtime, recorder = executor(namespace, database_url)
    async with serving(runtime, db_pool):
        await runtime.bus.publish_event(runtime.subjects.plan_created, plan)

    fills = [e for e in reported(runtime, recorder) if isinstance(e, OrderFilled)]
    assert sorted(f.leg for f in fills) == [0, 1]
    for fill in fills:
        order = plan.orders[fill.leg]
        assert fill.dry_run and fill.symbol == order.symbol and fill.side == order.side
        assert fill.message_id == derived_id(plan.run_id, "order", fill.leg, "filled")
        assert fill.fill.status == "closed" and fill.fill.filled > 0 and fill.fill.fee > 0
        assert fill.causation_id == plan.message_id
    [done] = recorder.models(runtime.subjects.rebalance_completed, RebalanceCompleted)
    assert done.message_id == derived_id(plan.run_id, "completed")
    assert done.status == "succeeded" and done.dry_run
    assert (done.orders_planned, done.orders_executed, done.orders_failed) == (2, 2, 0)
    assert done.total_value_traded > Decimal("7000") and done.fees > 0
    assert {h.asset for h in done.holdings_after} == {"USD"}  # dry run: holdings as the plan had them
    # The intents were stored and everything queued was relayed.
    states = await db_pool.fetch(
        "SELECT leg, state FROM order_intents WHERE run_id = $1::uuid ORDER BY leg", plan.run_id
    )
    assert [(r["leg"], r["state"]) for r in states] == [(0, "filled"), (1, "filled")]
    unpublished = await db_pool.fetchval(
        "SELECT count(*) FROM outbox WHERE producer = 'executor' AND published_at IS NULL"
        " AND message_id = ANY($1::text[])",
        [m.msg_id for m in recorder.messages],
    )
    assert unpublished == 0


async def test_a_redelivered_plan_completes_the_run_only_once(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    plan = plan_for(valued(strategy(dry_run=True), {"USD": "10000"}))
    runtime, recorder = executor(namespace, database_url)
    async with serving(runtime, db_pool):
        for _ in range(3):
            await runtime.bus.publish_event(runtime.subjects.plan_created, plan)

    assert len(recorder.on(runtime.subjects.rebalance_completed)) == 1
    assert sorted(order_events(recorder)) == ["filled", "filled"]
    intents = await db_pool.fetchval("SELECT count(*) FROM order_intents WHERE run_id = $1::uuid", plan.run_id)
    assert intents == 2


async def test_a_skipped_plan_completes_as_skipped_without_orders(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    plan = plan_for(valued(strategy(dry_run=True), {"BTC": "0.1", "ETH": "1.2", "USD": "2000"}))
    assert plan.decision == "skip"
    runtime, recorder = executor(namespace, database_url)
    async with serving(runtime, db_pool):
        await runtime.bus.publish_event(runtime.subjects.plan_created, plan)

    assert order_events(recorder) == []
    [done] = recorder.models(runtime.subjects.rebalance_completed, RebalanceCompleted)
    assert done.status == "skipped" and done.success and done.reason == plan.reason
    assert (done.orders_planned, done.orders_executed) == (0, 0)


async def test_a_live_plan_for_a_missing_connection_fails_the_run(
    namespace: str, database_url: str, db_pool: asyncpg.Pool
) -> None:
    plan: PlanCreated = plan_for(valued(strategy(dry_run=False, connection_id=str(uuid.uuid4())), {"USD": "10000"}))
    runtime, recorder = executor(namespace, database_url)
    async with serving(runtime, db_pool):
        await runtime.bus.publish_event(runtime.subjects.plan_created, plan)

    [done] = recorder.models(runtime.subjects.rebalance_completed, RebalanceCompleted)
    assert done.status == "failed"
    assert [e.code for e in done.errors] == ["unknown_connection"]
