"""One account's trading never holds back another's: with the exchange answering each account at
a limited rate, the second account's orders are on their way before the first account's are
placed, instead of waiting for them. Judged by the order of recorded events, not by durations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.common.exchanges.paper import account_orders
from tests.support.pipeline import due_event, in_process_pipeline, publish, seed_portfolio, wait_for

pytestmark = pytest.mark.integration

WEIGHTS = {"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}


@pytest.fixture
async def rate_limited_pipeline(
    database_url: str, nats_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    monkeypatch.setenv("PAPER_RATE_LIMIT", "4")  # calls per second, per account
    async with in_process_pipeline(database_url, nats_url, namespace):
        yield namespace


async def test_two_accounts_trade_side_by_side_each_in_its_own_order(
    rate_limited_pipeline: str, db_pool: asyncpg.Pool, nats_url: str
) -> None:
    first = await seed_portfolio(db_pool, weights=WEIGHTS, balances={"USD": "10000"})
    second = await seed_portfolio(db_pool, weights=WEIGHTS, balances={"USD": "10000"})
    dues = [due_event(first), due_event(second)]
    for due in dues:
        await publish(nats_url, f"{rate_limited_pipeline}.v1.evt.rebalance.due",
                      due.model_dump_json().encode(), due.message_id)
    for due in dues:
        status = await wait_for(
            db_pool, "SELECT status FROM rebalance_runs WHERE id = $1::uuid AND status <> 'running'", due.run_id)
        assert status == "succeeded"

    orders = {s.account: await account_orders(db_pool, s.account) for s in (first, second)}
    assert [len(o) for o in orders.values()] == [4, 4]
    # Each account's four orders wait a second for its rate limit. Served in parallel, each
    # account's intents were stored before the other account's orders reached the exchange;
    # served one after the other, the second account would start only after the first finished.
    stored = {
        s.account: await db_pool.fetchval(
            "SELECT min(created_at) FROM order_intents WHERE portfolio_id = $1::uuid", s.portfolio_id)
        for s in (first, second)
    }
    placed = {account: min(o.created_at for o in placed_orders) for account, placed_orders in orders.items()}
    assert stored[first.account] < placed[second.account], (stored, placed)
    assert stored[second.account] < placed[first.account], (stored, placed)
    # And each account in plan order (legs in sequence): the exchange numbered them in leg order.
    for seeded in (first, second):
        legs = await db_pool.fetch(
            "SELECT i.leg FROM order_intents i JOIN paper_orders o"
            " ON o.client_order_id = i.client_order_id AND o.account = $2"
            " WHERE i.portfolio_id = $1::uuid ORDER BY o.id", seeded.portfolio_id, seeded.account)
        assert [r["leg"] for r in legs] == sorted(r["leg"] for r in legs)
