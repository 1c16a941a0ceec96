"""The paper exchange's per-process caches against real PostgreSQL: market rows cached for
planning (the placing statement checks the row is still current) and balance and account reads
coalesced.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.common.exchanges.paper import (
    BalanceReader,
    PaperExchange,
    PaperOrderRejected,
    fund_account,
    paper_market,
    seed_markets,
    set_price,
)
from services.common.exchanges.paper_batch import AccountQuery
from services.common.exchanges.port import OrderRequest

pytestmark = pytest.mark.integration

D = Decimal


async def _market(pool: asyncpg.Pool, **rules: str) -> tuple[str, str]:
    coin = f"Q{uuid.uuid4().hex[:8].upper()}"
    market = paper_market(coin, "USD", "100", amount_step="0.01", price_step="0.01", min_amount="0.01", **rules)
    await seed_markets(pool, [market])
    return coin, f"{coin}/USD"


async def _account(pool: asyncpg.Pool) -> str:
    account = f"cache-{uuid.uuid4().hex[:8]}"
    await fund_account(pool, account, {"USD": D("100000")})
    return account


def _buy(symbol: str, amount: str, client_id: str) -> OrderRequest:
    return OrderRequest(symbol, "buy", D(amount), client_id)


async def test_an_order_after_a_price_move_fills_at_the_new_price(db_pool: asyncpg.Pool) -> None:
    _, symbol = await _market(db_pool)
    exchange = PaperExchange(db_pool, await _account(db_pool))
    first = await exchange.create_order(_buy(symbol, "1", "c1"))  # caches the row at 100
    await set_price(db_pool, symbol, D("120"))
    # Another account of the same process plans from the cached row, which is now stale.
    other = PaperExchange(db_pool, await _account(db_pool))
    second = await other.create_order(_buy(symbol, "1", "c2"))
    assert (first.average_price, second.average_price) == (D("100"), D("120"))
    assert second.cost == D("120")
    assert (await other.fetch_balance())["USD"].free == D("100000") - D("120") - second.fee


async def test_a_rule_changed_after_caching_is_enforced(db_pool: asyncpg.Pool) -> None:
    coin, symbol = await _market(db_pool)
    exchange = PaperExchange(db_pool, await _account(db_pool))
    await exchange.create_order(_buy(symbol, "1", "r1"))
    stricter = paper_market(coin, "USD", "100", amount_step="0.01", price_step="0.01", min_amount="5")
    await seed_markets(db_pool, [stricter])
    with pytest.raises(PaperOrderRejected) as rejected:
        await exchange.create_order(_buy(symbol, "1", "r2"))
    assert rejected.value.reason == "below_min_amount"


async def test_a_cached_rejection_is_rechecked_against_the_current_row(db_pool: asyncpg.Pool) -> None:
    _, symbol = await _market(db_pool, min_cost="500")
    exchange = PaperExchange(db_pool, await _account(db_pool))
    with pytest.raises(PaperOrderRejected):
        await exchange.create_order(_buy(symbol, "1", "m1"))  # 100 < min cost 500
    await set_price(db_pool, symbol, D("600"))
    result = await exchange.create_order(_buy(symbol, "1", "m2"))
    assert (result.status, result.average_price) == ("closed", D("600"))


class CountingPool:
    """Counts the queries a BalanceReader sends."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.fetches = 0

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.fetches += 1
        rows: list[asyncpg.Record] = await self.pool.fetch(query, *args)
        return rows


async def test_balance_reads_of_one_turn_share_one_query(db_pool: asyncpg.Pool) -> None:
    accounts = [f"bal-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for n, account in enumerate(accounts):
        await fund_account(db_pool, account, {"USD": D(100 + n), "BTC": D(n)})
    counting = CountingPool(db_pool)
    reader = BalanceReader(counting)  # type: ignore[arg-type]
    results = await asyncio.gather(*(reader.read(a) for a in [*accounts, accounts[0], "nobody"]))

    assert counting.fetches == 1
    assert [r["USD"].free for r in results[:3]] == [D(100), D(101), D(102)]
    assert "BTC" not in results[0] and results[2]["BTC"].total == D(2)  # zero balances left out
    assert results[3] == results[0] and results[3] is not results[0]
    assert results[4] == {}
    await reader.read(accounts[1])  # a later turn: a new query, seeing what is committed now
    assert counting.fetches == 2


async def test_account_reads_of_one_turn_share_one_query_each_caller_seeing_only_its_own(
    db_pool: asyncpg.Pool,
) -> None:
    coin, symbol = await _market(db_pool)
    first, second = await _account(db_pool), await _account(db_pool)
    await fund_account(db_pool, second, {coin: D("3")})
    resting = OrderRequest(symbol, "buy", D("1"), "open-1", order_type="limit", price=D("50"))
    await PaperExchange(db_pool, first).create_order(resting)  # below the market: stays open
    free_after_hold = (await PaperExchange(db_pool, first).fetch_balance())["USD"].free
    assert free_after_hold < D("100000") - D("50")  # the limit buy holds its cost and fee
    counting = CountingPool(db_pool)
    reader = BalanceReader(counting)  # type: ignore[arg-type]
    states = await asyncio.gather(
        reader.read_account(AccountQuery(first, ["USD"], ["open-1", "other"])),
        reader.read_account(AccountQuery(second, ["USD", coin], ["open-1"])),
        reader.read_account(AccountQuery("nobody", ["USD"], [])),
    )
    assert counting.fetches == 1
    assert [(s.free, s.open_client_ids) for s in states] == [
        ({"USD": free_after_hold}, {"open-1"}),
        ({"USD": D("100000"), coin: D("3")}, set()),  # another account's open id is not this one's
        ({}, set()),
    ]


async def test_a_failed_balance_query_fails_every_waiting_caller(db_pool: asyncpg.Pool) -> None:
    class Broken:
        async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
            raise ConnectionResetError("gone")

    reader = BalanceReader(Broken())  # type: ignore[arg-type]
    results = await asyncio.gather(reader.read("a"), reader.read("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results)
