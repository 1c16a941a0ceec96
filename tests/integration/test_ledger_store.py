"""The ledger's batch writes against real PostgreSQL: the one-statement (unnest) forms write
exactly what the row-by-row statements write, a batch of many runs writes what the same events
written one at a time do, and a batch holding two states of one order still ends in the later one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from contracts.subjects import Subjects
from contracts.v1 import PlanCreated
from services.ledger.records import Rows
from services.ledger.store import write_rows
from tests.component.test_ledger import run_events

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _order(client_id: str, run: str, leg: int, status: str, error: dict[str, Any] | None) -> tuple[Any, ...]:
    ids = (run, str(uuid.uuid4()), str(uuid.uuid4()))
    filled = Decimal("0.5") if status == "filled" else Decimal(0)
    return (client_id, *ids, leg, "paper", "BTC/USD", "buy", "market", Decimal("0.5"), status, filled,
            Decimal("100.25") if filled else None, filled * Decimal("100.25"), Decimal("0.13"), "USD",
            "42" if filled else None, False, error, True)


def _trade(client_id: str, run: str, fee_known: bool = True) -> tuple[Any, ...]:
    return (client_id, run, str(uuid.uuid4()), str(uuid.uuid4()), "paper", "BTC/USD", "BTC", "USD", "buy",
            Decimal("0.5"), Decimal("100.25"), Decimal("50.125"), Decimal("0.13"), "USD", "42", False, NOW,
            fee_known)


def _activity(message_id: str, run: str, details: dict[str, Any]) -> tuple[Any, ...]:
    return (message_id, str(uuid.uuid4()), str(uuid.uuid4()), run, "order_filled", "bought", details, NOW)


async def _write(pool: asyncpg.Pool, rows: Rows) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await write_rows(conn, rows)


async def test_a_batch_is_written_field_for_field(db_pool: asyncpg.Pool) -> None:
    run = str(uuid.uuid4())
    error = {"stage": "executor", "code": "below_minimum", "message": "too small", "leg": 1}
    rows = Rows(
        orders=[_order(f"{run}-0", run, 0, "filled", None), _order(f"{run}-1", run, 1, "rejected", error)],
        trades=[_trade(f"{run}-0", run), _trade(f"{run}-x", run, fee_known=False)],
        activity=[_activity(f"{run}-a", run, {"n": 1}), _activity(f"{run}-b", run, {})],
    )
    await _write(db_pool, rows)
    await _write(db_pool, rows)  # a replay changes nothing

    orders = await db_pool.fetch(
        "SELECT client_order_id, leg, status, filled, average_price, cost, error, exchange_order_id"
        " FROM orders WHERE run_id = $1::uuid ORDER BY leg", run)
    assert [(o["leg"], o["status"], o["filled"], o["average_price"], o["error"], o["exchange_order_id"])
            for o in orders] == [(0, "filled", Decimal("0.5"), Decimal("100.25"), None, "42"),
                                 (1, "rejected", Decimal(0), None, error, None)]
    trades = await db_pool.fetch(
        "SELECT quantity, value, executed_at, fee_known FROM trades WHERE run_id = $1::uuid ORDER BY client_order_id",
        run)
    assert [(t["quantity"], t["value"], t["executed_at"], t["fee_known"]) for t in trades] == [
        (Decimal("0.5"), Decimal("50.125"), NOW, True), (Decimal("0.5"), Decimal("50.125"), NOW, False)]
    activity = await db_pool.fetch(
        "SELECT message_id, details FROM activity_log WHERE run_id = $1::uuid ORDER BY id", run)
    assert [(a["message_id"], a["details"]) for a in activity] == [(f"{run}-a", {"n": 1}), (f"{run}-b", {})]


async def test_two_states_of_one_order_in_one_batch_end_in_the_later(db_pool: asyncpg.Pool) -> None:
    run = str(uuid.uuid4())
    submitted, filled = _order(f"{run}-0", run, 0, "submitted", None), _order(f"{run}-0", run, 0, "filled", None)
    await _write(db_pool, Rows(orders=[submitted, filled, _order(f"{run}-1", run, 1, "submitted", None)]))
    await _write(db_pool, Rows(orders=[submitted, _order(f"{run}-1", run, 1, "failed", None)]))  # late, stale
    statuses = await db_pool.fetch("SELECT leg, status FROM orders WHERE run_id = $1::uuid ORDER BY leg", run)
    assert [(s["leg"], s["status"]) for s in statuses] == [(0, "filled"), (1, "failed")]


async def _history(pool: asyncpg.Pool, run_ids: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runs = await pool.fetch("SELECT * FROM rebalance_runs WHERE id = ANY($1::uuid[]) ORDER BY id", run_ids)
    snapshots = await pool.fetch(
        "SELECT * FROM portfolio_snapshots WHERE run_id = ANY($1::uuid[]) ORDER BY run_id, kind", run_ids)
    return [dict(r) for r in runs], [{k: v for k, v in dict(s).items() if k != "id"} for s in snapshots]


async def test_runs_and_snapshots_of_many_runs_in_one_batch_equal_those_written_event_by_event(
    db_pool: asyncpg.Pool,
) -> None:
    """Three runs' events in one batch write the very rows that the same events written one at a
    time do."""
    events = [event for _ in range(3) for _subject, event in run_events(Subjects("t"))]
    run_ids = sorted({e.correlation_id for e in events})
    together = Rows()
    for event in events:
        together.add(event)  # type: ignore[arg-type]
    assert len(together.runs_completed) == 3 and len(together.snapshots) == 6
    await _write(db_pool, together)
    batched = await _history(db_pool, run_ids)
    assert len(batched[0]) == 3 and len(batched[1]) == 6

    async with db_pool.acquire() as conn:
        await conn.execute("DELETE FROM rebalance_runs WHERE id = ANY($1::uuid[])", run_ids)
        await conn.execute("DELETE FROM portfolio_snapshots WHERE run_id = ANY($1::uuid[])", run_ids)
    for event in events:
        alone = Rows()
        alone.add(event)  # type: ignore[arg-type]
        await _write(db_pool, alone)
    assert await _history(db_pool, run_ids) == batched


async def test_a_runs_json_columns_hold_what_its_events_said(db_pool: asyncpg.Pool) -> None:
    # The ledger hands pydantic's own JSON to jsonb (db.RawJson): it must read back as the events'
    # parts dumped field for field, money as plain decimal strings.
    events = [event for _subject, event in run_events(Subjects("t"))]
    plan = next(e for e in events if isinstance(e, PlanCreated))
    rows = Rows()
    for event in events:
        rows.add(event)  # type: ignore[arg-type]
    await _write(db_pool, rows)
    run = await db_pool.fetchrow(
        "SELECT strategy, drift, left_out, orders, errors FROM rebalance_runs WHERE id = $1::uuid", plan.run_id
    )
    assert run is not None
    assert run["strategy"] == plan.strategy.model_dump(mode="json")
    assert run["drift"] == [d.model_dump(mode="json") for d in plan.drift] and run["drift"]
    assert run["orders"] == [o.model_dump(mode="json") for o in plan.orders] and run["orders"]
    assert run["left_out"] == [] and run["errors"] == []
    assert all(isinstance(o["amount"], str) and "E" not in o["amount"] for o in run["orders"])
