"""The planner's message handling on TestNatsBroker: valuation in, plan out (no NATS, no database
except for the dead-letter test)."""

from __future__ import annotations

import json
import uuid

import asyncpg

from contracts.envelope import derived_id
from contracts.v1 import PlanCreated
from services.planner.app import build
from tests.component.harness import record, serving, settings_for
from tests.component.samples import strategy, valued


async def test_a_valuation_off_target_becomes_one_rebalance_plan(namespace: str) -> None:
    runtime, _app = build(settings_for(namespace))
    subjects = runtime.subjects
    recorder = record(runtime)
    message = valued(strategy(), {"USD": "10000"})
    async with serving(runtime):
        await runtime.bus.publish_event(subjects.portfolio_valued, message)

    [published] = recorder.on(subjects.plan_created)
    plan = PlanCreated.model_validate_json(published.body)
    assert published.msg_id == plan.message_id == derived_id(message.run_id, "plan")
    assert plan.correlation_id == message.run_id and plan.causation_id == message.message_id
    assert plan.decision == "rebalance"
    assert {(o.symbol, o.side) for o in plan.orders} == {("BTC/USD", "buy"), ("ETH/USD", "buy")}
    assert plan.portfolio_value == message.total_value
    assert plan.strategy == message.strategy and plan.holdings == message.holdings
    # Decimals stay strings on the wire.
    assert isinstance(published.json()["orders"][0]["amount"], str)


async def test_a_portfolio_on_target_is_skipped_with_a_reason(namespace: str) -> None:
    runtime, _app = build(settings_for(namespace))
    recorder = record(runtime)
    # 50/30/20 of 10,000 USD at BTC 50,000 and ETH 2,500.
    message = valued(strategy(), {"BTC": "0.1", "ETH": "1.2", "USD": "2000"})
    async with serving(runtime):
        await runtime.bus.publish_event(runtime.subjects.portfolio_valued, message)

    [plan] = recorder.models(runtime.subjects.plan_created, PlanCreated)
    assert plan.decision == "skip"
    assert plan.orders == []
    assert plan.reason
    assert {d.asset: d.drift for d in plan.drift} == {a: 0 for a in ("BTC", "ETH", "USD")}


async def test_a_redelivered_valuation_yields_the_same_plan_id(namespace: str) -> None:
    runtime, _app = build(settings_for(namespace))
    recorder = record(runtime)
    message = valued(strategy(), {"USD": "10000"})
    async with serving(runtime):
        await runtime.bus.publish_event(runtime.subjects.portfolio_valued, message)
        await runtime.bus.publish_event(runtime.subjects.portfolio_valued, message)

    first, second = recorder.models(runtime.subjects.plan_created, PlanCreated)
    # Downstream inboxes (and JetStream's dedup) recognise the second one.
    assert first.message_id == second.message_id
    assert first.orders == second.orders


async def test_each_run_gets_its_own_plan(namespace: str) -> None:
    runtime, _app = build(settings_for(namespace))
    recorder = record(runtime)
    strat = strategy()
    runs = [valued(strat, {"USD": "10000"}) for _ in range(3)]
    async with serving(runtime):
        for message in runs:
            await runtime.bus.publish_event(runtime.subjects.portfolio_valued, message)

    plans = recorder.models(runtime.subjects.plan_created, PlanCreated)
    assert [p.run_id for p in plans] == [m.run_id for m in runs]
    assert len({p.message_id for p in plans}) == 3


async def test_preview_answers_a_request_with_the_plan(namespace: str) -> None:
    runtime, _app = build(settings_for(namespace))
    message = valued(strategy(), {"USD": "10000"})
    async with serving(runtime) as broker:
        # As the API asks (services/api/preview.py): the JSON as a str, i.e. text/plain.
        reply = await broker.request(message.model_dump_json(), runtime.subjects.rpc_preview_plan)
        answer = json.loads(reply.body)
        bad = json.loads((await broker.request('{"run_id": 1}', runtime.subjects.rpc_preview_plan)).body)

    assert answer["decision"] == "rebalance" and answer["run_id"] == message.run_id
    assert bad["code"] == "invalid_request"


async def test_an_invalid_valuation_is_dead_lettered_and_plans_nothing(
    namespace: str, db_pool: asyncpg.Pool
) -> None:
    runtime, _app = build(settings_for(namespace))
    recorder = record(runtime)
    subject = runtime.subjects.portfolio_valued
    wrong_shape_id, future_id = str(uuid.uuid4()), str(uuid.uuid4())
    future = json.loads(valued(strategy(), {"USD": "10000"}).model_dump_json()) | {"schema_version": 2}
    async with serving(runtime, db_pool):
        await runtime.bus.publish_raw(subject, b'{"run_id": 42}', wrong_shape_id)
        await runtime.bus.publish_raw(subject, json.dumps(future).encode(), future_id)

    assert recorder.on(runtime.subjects.plan_created) == []
    rows = await db_pool.fetch(
        "SELECT message_id, consumer, subject, reason FROM dead_letters WHERE message_id = ANY($1::text[])"
        " ORDER BY id",
        [wrong_shape_id, future_id],
    )
    assert [(r["message_id"], r["consumer"], r["subject"]) for r in rows] == [
        (wrong_shape_id, "planner.valued", subject),
        (future_id, "planner.valued", subject),
    ]
    assert "invalid payload for PortfolioValued" in rows[0]["reason"]
    assert "schema_version" in rows[1]["reason"]


async def test_a_payload_that_is_not_json_is_dead_lettered(namespace: str, db_pool: asyncpg.Pool) -> None:
    runtime, _app = build(settings_for(namespace))
    garbage_id = str(uuid.uuid4())
    async with serving(runtime, db_pool):
        await runtime.bus.publish_raw(runtime.subjects.portfolio_valued, b"{not json", garbage_id)

    reason = await db_pool.fetchval("SELECT reason FROM dead_letters WHERE message_id = $1", garbage_id)
    assert reason is not None and "invalid payload" in reason
