"""The paper exchange's batch placement (``create_orders``) against real PostgreSQL: the same
outcome as the orders placed one at a time, refusals that stop nothing, faults numbered per order,
and a batch that never overdraws or loses a fill when batches and single orders race."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.common.exchanges import paper
from services.common.exchanges.paper import (
    FaultCounter,
    PaperConfig,
    PaperOrderRejected,
    account_orders,
    count_orders,
    fund_account,
    parse_faults,
    set_price,
)
from services.common.exchanges.paper_batch import StaleMarkets, place_batch
from services.common.exchanges.port import OrderRequest, OrderResult, OutcomeUnknown, RetryLater, RunFailed
from tests.integration.test_paper_exchange import Sandbox, box, order

pytestmark = pytest.mark.integration
__all__ = ["box"]  # the fixture, shared with the single-order tests

D = Decimal


async def test_a_batch_ends_exactly_where_the_same_orders_one_at_a_time_end(box: Sandbox) -> None:
    twin = Sandbox(box.pool)
    twin.coin, twin.alt, twin.symbol, twin.alt_symbol = box.coin, box.alt, box.symbol, box.alt_symbol
    funds = {"USD": D("10000"), box.alt: D("3")}
    await fund_account(box.pool, box.account, funds)
    await fund_account(box.pool, twin.account, funds)

    def requests(tag: str) -> list[OrderRequest]:
        return [
            order(box.alt_symbol, "sell", "2", f"{tag}-0"),  # brings in ~4,987 USD
            order(box.symbol, "buy", "0.25", f"{tag}-1"),  # 12,532.5 USD: needs the sale first
            order(box.symbol, "buy", "0.01", f"{tag}-2", price="40000"),  # rests, locks 400.64 USD
            order(box.cross_symbol, "buy", "0.5", f"{tag}-3"),  # needs the coin bought before it
        ]

    batch = await box.exchange().create_orders(requests("b"))
    single = [await twin.exchange().create_order(r) for r in requests("s")]

    assert [type(a) for a in batch] == [OrderResult] * 4
    assert [(a.status, a.filled, a.cost, a.fee, a.average_price) for a in batch if isinstance(a, OrderResult)] == [
        (s.status, s.filled, s.cost, s.fee, s.average_price) for s in single
    ]
    assert await box.exchange().fetch_balance() == await twin.exchange().fetch_balance()
    placed = await account_orders(box.pool, box.account)
    assert [o.client_order_id for o in placed] == ["b-0", "b-1", "b-2", "b-3"]  # numbered in order
    assert [a.exchange_order_id for a in batch if isinstance(a, OrderResult)] == [str(o.id) for o in placed]
    assert (await box.exchange().fetch_balance())["USD"].total - (await box.exchange().fetch_balance())[
        "USD"
    ].free == D("400.64")  # the resting order's lock: 0.01 x 40,000 + maker fee 0.16 %


async def test_a_refused_order_stops_nothing_and_changes_nothing(box: Sandbox) -> None:
    answers = await box.exchange().create_orders([
        order(box.symbol, "buy", "0.1"),  # 5,013 USD
        order(box.symbol, "buy", "0.1"),  # 5,013 more: not there
        order(box.symbol, "buy", "0.0005"),  # below the minimum amount
        order(box.alt_symbol, "buy", "1"),  # 2,506.5 USD: fits what the first left
    ])
    assert [a.status if isinstance(a, OrderResult) else a.reason for a in answers] == [  # type: ignore[attr-defined]
        "closed", "insufficient_funds", "below_min_amount", "closed"
    ]
    assert "needs 5013.0000" in str(answers[1]) and "free 4987.00" in str(answers[1])
    balances = await box.exchange().fetch_balance()
    assert balances["USD"].free == D("10000") - D("5013.0") - D("2506.5")
    assert await count_orders(box.pool, box.account) == 2


async def test_an_open_order_with_the_same_client_id_is_refused_as_a_duplicate(box: Sandbox) -> None:
    resting = await box.exchange().create_order(order(box.symbol, "buy", "0.01", "dup", price="40000"))
    assert resting.status == "open"
    [again, other] = await box.exchange().create_orders([
        order(box.symbol, "buy", "0.01", "dup", price="40000"), order(box.symbol, "buy", "0.01"),
    ])
    assert isinstance(again, PaperOrderRejected) and again.reason == "duplicate_client_order_id"
    assert isinstance(other, OrderResult) and other.status == "closed"


async def test_faults_are_numbered_per_order_and_a_stopping_fault_ends_the_batch(box: Sandbox) -> None:
    counter = FaultCounter()
    config = PaperConfig(faults=parse_faults("reject_insufficient=1,drop_response=3"), fault_counter=counter)
    answers = await box.exchange(config).create_orders([order(box.symbol, "buy", "0.01", f"c{i}") for i in range(5)])
    assert [type(a) for a in answers] == [PaperOrderRejected, OrderResult, OutcomeUnknown]
    assert counter.calls == 3, "orders after the dropped answer were never sent"
    placed = [o.client_order_id for o in await account_orders(box.pool, box.account)]
    assert placed == ["c1", "c2"], "the dropped answer's order executed; nothing after it did"

    for fault, error in (("timeout", OutcomeUnknown), ("unavailable", RetryLater), ("auth", RunFailed)):
        config = PaperConfig(faults=parse_faults(f"{fault}=2"), fault_counter=FaultCounter())
        answers = await box.exchange(config).create_orders(
            [order(box.symbol, "buy", "0.01", f"{fault}{i}") for i in range(3)]
        )
        assert [type(a) for a in answers] == [OrderResult, error], fault
        placed = [o.client_order_id for o in await account_orders(box.pool, box.account)]
        assert f"{fault}0" in placed and f"{fault}1" not in placed and f"{fault}2" not in placed


async def test_racing_batches_and_single_orders_never_overdraw_and_conserve_balances(box: Sandbox) -> None:
    """Funds for exactly 10 buys of 0.019; batches of 3 and single orders race for them while the
    price moves. Every fill reported is in the balances; nothing goes below zero."""
    await fund_account(box.pool, box.account, {"USD": D("9524.70")})
    exchange = box.exchange()
    batches = [exchange.create_orders([order(box.symbol, "buy", "0.019") for _ in range(3)]) for _ in range(4)]
    singles = [exchange.create_orders([order(box.symbol, "buy", "0.019")]) for _ in range(8)]
    answers = [a for batch in await asyncio.gather(*batches, *singles) for a in batch]
    filled = [a for a in answers if isinstance(a, OrderResult)]
    refused = [a for a in answers if isinstance(a, PaperOrderRejected) and a.reason == "insufficient_funds"]
    assert (len(filled), len(refused)) == (10, 10)
    balances = await exchange.fetch_balance()
    assert "USD" not in balances
    assert balances[box.coin].total == D("0.19")


class MovesPriceBeforeWriting:
    """A connection that lets another session move the price between the batch's read and its
    writes, the race the version check exists for."""

    def __init__(self, conn: asyncpg.Connection, pool: asyncpg.Pool, symbol: str, price: Decimal) -> None:
        self._conn, self._pool, self._symbol, self._price = conn, pool, symbol, price

    async def fetch(self, *args: Any) -> Any:
        return await self._conn.fetch(*args)

    async def execute(self, *args: Any) -> Any:  # the first write
        await set_price(self._pool, self._symbol, self._price)
        return await self._conn.execute(*args)


async def test_a_price_move_between_read_and_write_rolls_the_batch_back(box: Sandbox) -> None:
    async with box.pool.acquire() as conn:
        racing = MovesPriceBeforeWriting(conn, box.pool, box.symbol, D("60000"))
        with pytest.raises(StaleMarkets):
            async with conn.transaction():
                await place_batch(racing, box.account, [order(box.symbol, "buy", "0.01")])  # type: ignore[arg-type]
    assert await count_orders(box.pool, box.account) == 0
    assert (await box.exchange().fetch_balance())["USD"].free == D("10000")


async def test_the_exchange_settles_a_stale_batch_again_at_the_current_price(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = []

    async def racing_once(conn: asyncpg.Connection, account: str, requests: list) -> list:  # type: ignore[type-arg]
        attempts.append(len(requests))
        if len(attempts) == 1:
            conn = MovesPriceBeforeWriting(conn, box.pool, box.symbol, D("60000"))  # type: ignore[assignment]
        return await place_batch(conn, account, requests)

    monkeypatch.setattr(paper, "place_batch", racing_once)
    exchange = box.exchange()
    [answer] = await exchange.create_orders([order(box.symbol, "buy", "0.01")])
    assert attempts == [1, 1] and exchange.rolled_back_retries == 1
    assert isinstance(answer, OrderResult) and answer.average_price == D("60000")
    assert (await exchange.fetch_balance())["USD"].free == D("10000") - D("600") - D("1.56")
