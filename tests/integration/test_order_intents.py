"""Order intents in PostgreSQL: legs about to be sent are stored as 'sending' with the intents;
a resumed run finds what was stored; legs a batch never sent go back to 'intent', uncounted;
a phase's outcomes and its one event are written together, once."""

from __future__ import annotations

import json
from decimal import Decimal

import asyncpg
import pytest

from contracts.v1 import PlanCreated
from services.common.db import OutboxMessage
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.executor import intents
from services.planner.app import plan_for
from tests.component.samples import strategy, valued

pytestmark = pytest.mark.integration


def a_plan() -> PlanCreated:
    plan = plan_for(valued(strategy(dry_run=False), {"USD": "10000"}))
    assert plan.decision == "rebalance" and len(plan.orders) == 2
    return plan


async def states(pool: asyncpg.Pool, plan: PlanCreated) -> list[tuple[int, str, int]]:
    rows = await pool.fetch(
        "SELECT leg, state, attempts FROM order_intents WHERE run_id = $1::uuid ORDER BY leg", plan.run_id
    )
    return [(r["leg"], r["state"], r["attempts"]) for r in rows]


async def store_intents(
    pool: asyncpg.Pool, plan: PlanCreated, ids: dict[int, str], sending: dict[int, Decimal] | None = None
) -> dict[int, intents.Intent]:
    """One run's intents, as the executor stores them (through the many-runs statement)."""
    [legs] = await intents.ensure_intents_many(pool, [intents.WantedIntents(plan, ids, sending or {})])
    return legs


async def test_the_first_batch_is_stored_as_sending_and_a_resumed_run_keeps_what_was_stored(
    db_pool: asyncpg.Pool,
) -> None:
    plan = a_plan()
    ids = {o.leg: client_order_id_for("paper", plan.run_id, o.leg) for o in plan.orders}
    first = plan.orders[0]
    legs = await store_intents(db_pool, plan, ids, {first.leg: first.amount / 2})
    assert [(i.state, i.fresh) for _, i in sorted(legs.items())] == [("sending", True), ("intent", True)]
    assert legs[first.leg].amount == first.amount / 2  # stored with the amount it is sent with
    assert await states(db_pool, plan) == [(0, "sending", 1), (1, "intent", 0)]

    again = await store_intents(db_pool, plan, ids, {o.leg: o.amount for o in plan.orders})
    assert [(i.state, i.fresh) for _, i in sorted(again.items())] == [("sending", False), ("intent", False)]
    assert await states(db_pool, plan) == [(0, "sending", 1), (1, "intent", 0)]


async def test_several_runs_store_their_intents_in_one_statement_each_getting_its_own(
    db_pool: asyncpg.Pool,
) -> None:
    resumed, new = a_plan(), a_plan()
    resumed_ids = {o.leg: client_order_id_for("paper", resumed.run_id, o.leg) for o in resumed.orders}
    new_ids = {o.leg: client_order_id_for("paper", new.run_id, o.leg) for o in new.orders}
    await store_intents(db_pool, resumed, resumed_ids, {0: resumed.orders[0].amount})

    first_leg_sending = {0: new.orders[0].amount}
    both = await intents.ensure_intents_many(
        db_pool,
        [intents.WantedIntents(resumed, resumed_ids), intents.WantedIntents(new, new_ids, first_leg_sending)],
    )
    assert [sorted((leg, i.client_order_id, i.state, i.fresh) for leg, i in legs.items()) for legs in both] == [
        [(0, resumed_ids[0], "sending", False), (1, resumed_ids[1], "intent", False)],
        [(0, new_ids[0], "sending", True), (1, new_ids[1], "intent", True)],
    ]
    assert await states(db_pool, new) == [(0, "sending", 1), (1, "intent", 0)]


async def test_one_run_twice_in_a_batch_is_refused_before_anything_is_stored(db_pool: asyncpg.Pool) -> None:
    # Both entries would see the run's new legs as their own, never sent: the batch is refused
    # (the Coalescer then stores them one after the other, the second finding them stored).
    plan = a_plan()
    ids = {o.leg: client_order_id_for("paper", plan.run_id, o.leg) for o in plan.orders}
    with pytest.raises(ValueError, match="one run twice"):
        await intents.ensure_intents_many(db_pool, [intents.WantedIntents(plan, ids)] * 2)
    assert await states(db_pool, plan) == []


async def test_legs_a_batch_never_sent_go_back_to_intent_uncounted(db_pool: asyncpg.Pool) -> None:
    plan = a_plan()
    ids = {o.leg: client_order_id_for("paper", plan.run_id, o.leg) for o in plan.orders}
    await store_intents(db_pool, plan, ids)
    await intents.mark_sending_many(db_pool, [(ids[o.leg], o.amount) for o in plan.orders])
    assert await states(db_pool, plan) == [(0, "sending", 1), (1, "sending", 1)]
    await intents.unmark_unsent(db_pool, [ids[1]])
    assert await states(db_pool, plan) == [(0, "sending", 1), (1, "intent", 0)]


async def test_a_leg_resolved_meanwhile_is_never_marked_to_be_sent_again(db_pool: asyncpg.Pool) -> None:
    # The reconciler (another process) may resolve a leg between the run's read of it and its
    # send: the mark that must precede every send refuses a final leg, and the run sends nothing.
    plan = a_plan()
    ids = {o.leg: client_order_id_for("paper", plan.run_id, o.leg) for o in plan.orders}
    await store_intents(db_pool, plan, ids)
    first = plan.orders[0]
    assert await intents.mark_sending(db_pool, ids[0], first.amount)
    assert await intents.mark_sending(db_pool, ids[0], first.amount)  # looked up, not found: sent again
    await intents.resolve(db_pool, ids[0], "filled", {"exchange_order_id": "7"})
    assert not await intents.mark_sending(db_pool, ids[0], first.amount)
    legs = [(ids[o.leg], o.amount) for o in plan.orders]
    assert await intents.mark_sending_many(db_pool, legs) == 1  # only the leg still unsent
    assert await states(db_pool, plan) == [(0, "filled", 2), (1, "sending", 1)]


async def test_a_phase_outcome_and_its_event_are_written_together_once(db_pool: asyncpg.Pool) -> None:
    plan = a_plan()
    ids = {o.leg: client_order_id_for("paper", plan.run_id, o.leg) for o in plan.orders}
    await store_intents(db_pool, plan, ids)
    event = OutboxMessage("t.evt.order.reported", f"orders-{plan.run_id}", b"{}")
    outcomes = [
        intents.Outcome(ids[0], "filled", {"exchange_order_id": "7", "filled": "1"}),
        intents.Outcome(ids[1], "rejected", None),
    ]
    for _ in range(2):  # a replay changes nothing
        await intents.record_outcomes(db_pool, [(outcomes, event)])
    rows = await db_pool.fetch(
        "SELECT leg, state, exchange_order_id, result FROM order_intents WHERE run_id = $1::uuid ORDER BY leg",
        plan.run_id,
    )
    assert [(r["state"], r["exchange_order_id"]) for r in rows] == [("filled", "7"), ("rejected", None)]
    assert rows[0]["result"] == {"exchange_order_id": "7", "filled": "1"} and rows[1]["result"] is None
    queued = await db_pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = $1", event.message_id)
    assert queued == 1

    # A phase whose legs are not stored queues no event, even beside one whose legs are.
    orphan = OutboxMessage("t.evt.order.reported", f"orphan-{plan.run_id}", json.dumps({}).encode())
    again = OutboxMessage("t.evt.order.reported", f"again-{plan.run_id}", b"{}")
    await intents.record_outcomes(
        db_pool,
        [
            ([intents.Outcome("no-such-order", "filled", None)], orphan),
            ([intents.Outcome(ids[1], "failed", None)], again),
        ],
    )
    assert await db_pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = $1", orphan.message_id) == 0
    assert await db_pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = $1", again.message_id) == 1
    assert await states(db_pool, plan) == [(0, "filled", 0), (1, "failed", 0)]
