"""One rebalance through pricer -> planner -> executor -> ledger on real JetStream and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from services.common.exchanges.paper import PaperExchange, account_orders
from tests.support.pipeline import (
    due_event,
    in_process_pipeline,
    publish,
    seed_portfolio,
    stream_messages,
    wait_for,
    wait_until_drained,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def pipeline(database_url: str, nats_url: str, namespace: str) -> AsyncIterator[str]:
    async with in_process_pipeline(database_url, nats_url, namespace):
        yield namespace


async def test_a_run_rebalances_the_paper_account_and_records_its_history(
    pipeline: str, db_pool: asyncpg.Pool, nats_url: str
) -> None:
    seeded = await seed_portfolio(
        db_pool, weights={"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}, balances={"USD": "10000"}, threshold="5"
    )
    due = due_event(seeded)
    await publish(nats_url, f"{pipeline}.v1.evt.rebalance.due", due.model_dump_json().encode(), due.message_id)

    status = await wait_for(db_pool, "SELECT status FROM rebalance_runs WHERE id = $1::uuid AND status <> 'running'",
                            due.run_id)
    run = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", due.run_id)
    assert status == "succeeded", run
    assert run["orders_planned"] == 4 and run["orders_executed"] == 4 and run["orders_failed"] == 0
    assert run["success"] is True and run["decision"] == "rebalance"
    assert run["total_value_traded"] > Decimal("9000")
    trades = await db_pool.fetch("SELECT * FROM trades WHERE run_id = $1::uuid", due.run_id)
    assert {t["asset"] for t in trades} == {"BTC", "ETH", "SOL", "ADA"}
    assert all(t["fee"] > 0 and t["side"] == "buy" for t in trades)
    kinds = {r["kind"] for r in await db_pool.fetch(
        "SELECT kind FROM portfolio_snapshots WHERE run_id = $1::uuid", due.run_id)}
    assert kinds == {"before", "after"}
    events = {r["event_type"] for r in await db_pool.fetch(
        "SELECT event_type FROM activity_feed WHERE run_id = $1::uuid", due.run_id)}
    assert {"rebalance_triggered", "portfolio_valued", "plan_created", "order_filled", "rebalance_succeeded"} <= events

    # The paper account is back at target within the threshold.
    exchange = PaperExchange(db_pool, seeded.account)
    balances = await exchange.fetch_balance()
    prices = await exchange.fetch_prices(None)
    values = {a: balances[a].total * prices[f"{a}/USD"] for a in ("BTC", "ETH", "SOL", "ADA")}
    total = sum(values.values()) + balances["USD"].total
    for asset, weight in {"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}.items():
        assert abs(values[asset] / total * 100 - weight) < 5, (asset, values[asset] / total * 100)


async def test_every_message_of_a_run_delivered_twice_changes_nothing(
    pipeline: str, db_pool: asyncpg.Pool, nats_url: str
) -> None:
    seeded = await seed_portfolio(
        db_pool, weights={"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}, balances={"USD": "10000"}, threshold="5"
    )
    due = due_event(seeded)
    await publish(nats_url, f"{pipeline}.v1.evt.rebalance.due", due.model_dump_json().encode(), due.message_id)
    await wait_for(db_pool, "SELECT 1 FROM rebalance_runs WHERE id = $1::uuid AND status <> 'running'", due.run_id)
    stream = pipeline.upper()
    await wait_until_drained(nats_url, stream)

    async def counts() -> dict[str, int]:
        out = {}
        for table in ("rebalance_runs", "orders", "trades", "portfolio_snapshots", "activity_log", "activity_feed"):
            key = "id" if table == "rebalance_runs" else "run_id"
            out[table] = await db_pool.fetchval(f"SELECT count(*) FROM {table} WHERE {key} = $1::uuid", due.run_id)
        out["paper_orders"] = len(await account_orders(db_pool, seeded.account))
        return out

    before = await counts()
    assert before["rebalance_runs"] == 1 and before["trades"] == 4 and before["paper_orders"] == 4

    # Redeliver every message of the run twice: same payloads (same message ids inside), new
    # Nats-Msg-Id headers so that JetStream's own dedup window does not hide them.
    messages = await stream_messages(nats_url, stream, f"{pipeline}.v1.evt.>")
    # due, valued, plan, the 4 buys' outcomes in one message, completed
    assert [subject.split(".v1.evt.", 1)[1] for subject, _ in messages] == [
        "rebalance.due", "portfolio.valued", "plan.created", "order.reported", "rebalance.completed"
    ]
    for copy in (1, 2):
        for index, (subject, payload) in enumerate(messages):
            await publish(nats_url, subject, payload, f"redelivery-{copy}-{index}")
    await wait_until_drained(nats_url, stream)

    assert await counts() == before
    run = await db_pool.fetchrow("SELECT status, orders_executed FROM rebalance_runs WHERE id = $1::uuid", due.run_id)
    assert run["status"] == "succeeded" and run["orders_executed"] == 4


async def test_the_seeds_history_queries_work_in_sql_on_what_the_ledger_wrote(
    pipeline: str, db_pool: asyncpg.Pool, nats_url: str
) -> None:
    seeded = await seed_portfolio(
        db_pool, weights={"BTC": 60, "ETH": 30, "USDC": 10}, balances={"USD": "5000"}, threshold="5"
    )
    unpriced = await seed_portfolio(db_pool, weights={"BTC": 50, "NOPE": 50}, balances={"USD": "100"})
    dues = [due_event(seeded), due_event(seeded), due_event(unpriced)]
    for due in dues:
        await publish(nats_url, f"{pipeline}.v1.evt.rebalance.due", due.model_dump_json().encode(), due.message_id)
        await wait_for(db_pool, "SELECT 1 FROM rebalance_runs WHERE id = $1::uuid AND status <> 'running'", due.run_id)

    # Get last 10 rebalances for a portfolio.
    last = await db_pool.fetch(
        "SELECT id::text, success FROM rebalance_runs WHERE portfolio_id = $1::uuid ORDER BY executed_at DESC LIMIT 10",
        seeded.portfolio_id,
    )
    assert [r["id"] for r in last] == [dues[1].run_id, dues[0].run_id]
    # Get all successful rebalances, with their portfolio.
    successful = await db_pool.fetch(
        "SELECT rh.id::text, p.name FROM rebalance_runs rh JOIN portfolios p ON p.id = rh.portfolio_id"
        " WHERE rh.success AND rh.id = ANY($1::uuid[])", [d.run_id for d in dues])
    assert {r["id"] for r in successful} == {dues[0].run_id, dues[1].run_id}
    # Rebalances in a date range.
    in_range = await db_pool.fetchval(
        "SELECT count(*) FROM rebalance_runs WHERE executed_at >= $1 AND executed_at <= now() AND id = ANY($2::uuid[])",
        dues[0].started_at, [d.run_id for d in dues])
    assert in_range == 3
    # The aggregate: total value traded, average portfolio value, count.
    stats = await db_pool.fetchrow(
        "SELECT sum(total_value_traded) AS traded, avg(portfolio_value) AS value, count(*) AS runs"
        " FROM rebalance_runs WHERE portfolio_id = $1::uuid", seeded.portfolio_id)
    assert stats["runs"] == 2 and stats["traded"] > Decimal("4000") and stats["value"] > Decimal("4900")
    # Failed rebalances, with their errors.
    failed = await db_pool.fetchrow(
        "SELECT rh.errors, p.name FROM rebalance_runs rh JOIN portfolios p ON p.id = rh.portfolio_id"
        " WHERE rh.success = false AND rh.id = $1::uuid", dues[2].run_id)
    assert failed["errors"][0]["code"] == "missing_price" and "NOPE" in failed["errors"][0]["message"]


async def test_history_shows_the_decision_the_drift_and_every_left_out_leg(
    pipeline: str, db_pool: asyncpg.Pool, nats_url: str
) -> None:
    # ADA's 0.05 % of 10,000 USD is a 5 USD buy: below the exchange's 10 USD minimum.
    seeded = await seed_portfolio(db_pool, weights={"BTC": "99.95", "ADA": "0.05"}, balances={"USD": "10000"})
    due = due_event(seeded)
    await publish(nats_url, f"{pipeline}.v1.evt.rebalance.due", due.model_dump_json().encode(), due.message_id)
    await wait_for(db_pool, "SELECT 1 FROM rebalance_runs WHERE id = $1::uuid AND status <> 'running'", due.run_id)

    run = await db_pool.fetchrow("SELECT * FROM rebalance_runs WHERE id = $1::uuid", due.run_id)
    assert run["decision"] == "rebalance" and run["status"] == "succeeded"
    drift = {d["asset"]: d for d in run["drift"]}
    assert set(drift) >= {"BTC", "ADA", "USD"}
    assert Decimal(drift["USD"]["current_weight"]) == 100 and Decimal(drift["BTC"]["target_weight"]) == Decimal("99.95")
    [left_out] = run["left_out"]
    assert left_out["asset"] == "ADA" and left_out["side"] == "buy"
    assert "minimum" in left_out["reason"], left_out
    assert [o["base"] for o in run["orders"]] == ["BTC"]
    activity = await db_pool.fetchval(
        "SELECT details FROM activity_log WHERE run_id = $1::uuid AND event_type = 'plan_created'", due.run_id)
    assert activity["left_out"] == [left_out["reason"]]
