"""A leg of unknown outcome when its run completed, reported later by the executor's reconciler,
joins the run's figures in the ledger once, whatever order the completion and the report arrive
in: counted as executed (or failed), its value and fee added, and its error saying it was found
after the run. The late report is the one the reconciler builds; real PostgreSQL, the ledger's own
row building and batch writes."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg
import pytest

from contracts.envelope import Envelope
from contracts.subjects import Subjects
from contracts.v1 import OrderFilled, OrdersReported, PlanCreated, RebalanceCompleted, RunError, RunStage
from services.common.exchanges.port import OrderResult, OrderStatus
from services.executor.reconciler import leg_report
from services.ledger.records import Rows, describe_run, money
from services.ledger.store import write_rows
from tests.component.test_ledger import run_events

pytestmark = pytest.mark.integration


def stopped_run(
    subjects: Subjects,
) -> tuple[list[Envelope], OrdersReported, OrdersReported, OrdersReported, PlanCreated]:
    """A two-leg run whose second leg was of unknown outcome when it completed: its events up to
    the completion, and the reconciler's later report of that leg: filled, unfilled, and not
    placed (the paper exchange does not have it)."""
    events = [event for _, event in run_events(subjects)]
    plan = next(e for e in events if isinstance(e, PlanCreated))
    first, second = plan.orders
    [fill] = [e for e in events if isinstance(e, OrderFilled) and e.leg == first.leg]
    done = next(e for e in events if isinstance(e, RebalanceCompleted))
    unknown = RunError(
        stage="executor", code="outcome_unknown", message=f"buy {second.symbol} may be on the exchange", leg=second.leg
    )
    refused = RunError(stage="executor", code="auth", message="the exchange refused the key")
    done = done.model_copy(
        update={
            "status": "failed",
            "orders_executed": 1,
            "total_value_traded": first.value,
            "fees": first.fee,
            "errors": [unknown, refused],
            "reason": refused.message,
        }
    )
    # The intent and run row the reconciler reads, and what the exchange says of the leg.
    client_order_id = f"rb-{plan.run_id[:8]}-{second.leg}"
    row = {
        "run_id": plan.run_id,
        "portfolio_id": plan.portfolio_id,
        "user_id": plan.user_id,
        "triggered_by": plan.triggered_by,
        "started_at": plan.started_at,
        "leg": second.leg,
        "client_order_id": client_order_id,
        "symbol": second.symbol,
        "side": second.side,
        "order_type": "market",
        "amount": second.amount,
        "quote_currency": "USD",
        "prices": {asset: str(price) for asset, price in plan.prices.items()},
    }

    def late(status: OrderStatus | None, filled: Decimal) -> OrdersReported:
        if status is None:
            return leg_report(row, None, exchange_id="paper", now=done.completed_at)[1]
        found = OrderResult(
            client_order_id=client_order_id,
            exchange_order_id="x-2",
            symbol=second.symbol,
            side=second.side,
            status=status,
            amount=second.amount,
            filled=filled,
            average_price=second.price if filled else None,
            cost=filled * second.price,
            fee=Decimal("1.25") if filled else Decimal(0),
            fee_currency="USD",
        )
        return leg_report(row, found, exchange_id="paper", now=done.completed_at)[1]

    return (
        [*events[:3], fill, done],
        late("closed", second.amount),
        late("canceled", Decimal(0)),
        late(None, Decimal(0)),
        plan,
    )


async def write(pool: asyncpg.Pool, *batches: Sequence[Envelope]) -> None:
    for batch in batches:
        rows = Rows()
        for event in batch:
            assert isinstance(event, RunStage)
            rows.add(event)
        async with pool.acquire() as conn, conn.transaction():
            await write_rows(conn, rows)


@pytest.mark.parametrize("arrival", ["report after the completion", "report before the completion", "one batch"])
async def test_a_leg_found_after_its_run_joins_the_runs_figures_once(
    db_pool: asyncpg.Pool, namespace: str, arrival: str
) -> None:
    events, found, _, _, plan = stopped_run(Subjects(namespace))
    *before, done = events
    if arrival == "report after the completion":
        await write(db_pool, events, [found], [found])  # reported twice: added once
    elif arrival == "report before the completion":
        await write(db_pool, before, [found], [done], [found])
    else:
        await write(db_pool, [*events, found])

    run = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", plan.run_id)
    first, second = plan.orders
    late_value = second.amount * second.price
    assert (run["status"], run["orders_executed"], run["orders_failed"]) == ("failed", 2, 0)
    assert run["total_value_traded"] == first.value + late_value
    assert run["fees"] == first.fee + Decimal("1.25")
    [late, refused] = run["errors"]
    assert late["code"] == "outcome_found_late" and late["leg"] == second.leg
    assert late["message"].endswith("may be on the exchange; found filled after the run completed")
    assert refused["code"] == "auth"  # the other errors stay as they were
    trades = await db_pool.fetch("SELECT client_order_id, value FROM trades WHERE run_id = $1::uuid", plan.run_id)
    assert sorted(t["value"] for t in trades) == sorted([first.value, late_value])
    # The run's activity line tells the figures it has now, and its errors as they read now.
    [line] = await db_pool.fetch(
        "SELECT description, details FROM activity_log WHERE run_id = $1::uuid AND event_type = 'rebalance_failed'",
        plan.run_id,
    )
    assert line["description"] == describe_run(
        "failed", False, 2, first.value + late_value, "USD", run["duration_ms"], refused["message"]
    )
    traded = money(first.value + late_value, "USD")
    assert line["description"].startswith(f"✗ Portfolio rebalance failed (2 orders, {traded} traded")
    assert [e["code"] for e in line["details"]["errors"]] == ["outcome_found_late", "auth"]


async def test_a_leg_found_unfilled_after_its_run_counts_as_failed(db_pool: asyncpg.Pool, namespace: str) -> None:
    events, _, unfilled, _, plan = stopped_run(Subjects(namespace))
    await write(db_pool, events, [unfilled])
    run = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", plan.run_id)
    assert (run["orders_executed"], run["orders_failed"]) == (1, 1)
    assert run["total_value_traded"] == plan.orders[0].value and run["fees"] == plan.orders[0].fee
    assert run["errors"][0]["code"] == "outcome_found_late"
    assert run["errors"][0]["message"].endswith("found canceled after the run completed")
    order = await db_pool.fetchrow("SELECT status FROM orders WHERE run_id = $1::uuid AND leg = 1", plan.run_id)
    assert order["status"] == "canceled"


async def test_a_leg_the_paper_exchange_never_took_counts_as_failed_not_placed(
    db_pool: asyncpg.Pool, namespace: str
) -> None:
    events, _, _, not_placed, plan = stopped_run(Subjects(namespace))
    [order] = not_placed.orders
    assert order.outcome == "failed" and order.fill.filled == 0
    assert order.error is not None and order.error.code == "not_placed"
    await write(db_pool, events, [not_placed], [not_placed])  # reported twice: added once
    run = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", plan.run_id)
    assert (run["orders_executed"], run["orders_failed"]) == (1, 1)
    assert run["total_value_traded"] == plan.orders[0].value and run["fees"] == plan.orders[0].fee
    assert run["errors"][0]["code"] == "outcome_found_late"
    assert run["errors"][0]["message"].endswith("may be on the exchange; found not placed after the run completed")
    row = await db_pool.fetchrow("SELECT status, error FROM orders WHERE run_id = $1::uuid AND leg = 1", plan.run_id)
    assert row["status"] == "failed" and row["error"]["code"] == "not_placed"
    assert await db_pool.fetchval("SELECT count(*) FROM trades WHERE run_id = $1::uuid", plan.run_id) == 1


async def test_a_run_whose_unknown_leg_is_not_reported_yet_keeps_its_figures(
    db_pool: asyncpg.Pool, namespace: str
) -> None:
    events, _, _, _, plan = stopped_run(Subjects(namespace))
    await write(db_pool, events, events[-1:])  # the completion again (a second delivery)
    run = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", plan.run_id)
    assert (run["orders_executed"], run["orders_failed"]) == (1, 0)
    assert [e["code"] for e in run["errors"]] == ["outcome_unknown", "auth"]
    line = await db_pool.fetchval(
        "SELECT description FROM activity_log WHERE run_id = $1::uuid AND event_type = 'rebalance_failed'", plan.run_id
    )
    assert line.startswith("✗ Portfolio rebalance failed (1 orders, ")
