"""The paper exchange's batch placement (``create_orders``) against real PostgreSQL: the same
outcome as the orders placed one at a time, refusals that stop nothing, faults numbered per order,
and a batch that never overdraws or loses a fill when batches and single orders race."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

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
    run_price_walk,
    set_price,
)
from services.common.exchanges.paper_batch import (
    AccountQuery,
    Placement,
    StaleMarkets,
    read_accounts,
    settle_in_order,
    write_batch,
)
from services.common.exchanges.port import OrderRequest, OrderResult, OutcomeUnknown, RetryLater, RunFailed
from tests.integration.test_paper_exchange import Sandbox, balances_after, box, order

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


async def test_a_market_that_changed_since_it_was_read_makes_the_write_place_nothing(box: Sandbox) -> None:
    exchange = box.exchange()
    quotes, _ = await exchange._quotes([box.symbol], fresh=True)
    [account] = await read_accounts(box.pool, [AccountQuery(box.account, ["USD", box.coin], [])])
    [placement] = settle_in_order({box.symbol: quotes[box.symbol].market}, account.free, set(),
                                  [order(box.symbol, "buy", "0.01")])
    assert isinstance(placement, Placement)
    await set_price(box.pool, box.symbol, D("60000"))
    with pytest.raises(StaleMarkets):
        await write_batch(box.pool, box.account, [placement], {box.symbol: quotes[box.symbol].version})
    assert await count_orders(box.pool, box.account) == 0
    assert (await exchange.fetch_balance())["USD"].free == D("10000")


def before_first_write(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[None]]) -> list[Any]:
    """Runs ``meanwhile`` between the first batch's read and its write; the writes made, in order."""
    writes: list[Any] = []

    async def write(*args: Any) -> list[str]:
        writes.append(args)
        if len(writes) == 1:
            await meanwhile()
        return await write_batch(*args)

    monkeypatch.setattr(paper, "write_batch", write)
    return writes


async def test_a_price_move_between_read_and_write_is_settled_again_at_the_new_price(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = before_first_write(monkeypatch, lambda: set_price(box.pool, box.symbol, D("60000")))
    exchange = box.exchange()
    [answer] = await exchange.create_orders([order(box.symbol, "buy", "0.01")])
    assert len(writes) == 2 and exchange.rolled_back_retries == 1
    assert isinstance(answer, OrderResult) and answer.average_price == D("60000")
    assert (await exchange.fetch_balance())["USD"].free == D("10000") - D("600") - D("1.56")


async def test_funds_gone_between_read_and_write_refuse_the_order_instead_of_overdrawing(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A withdrawal, meanwhile.
    writes = before_first_write(monkeypatch, lambda: fund_account(box.pool, box.account, {"USD": D("100")}))
    exchange = box.exchange()
    [answer] = await exchange.create_orders([order(box.symbol, "buy", "0.01")])  # 501.3 USD
    assert len(writes) == 1 and exchange.rolled_back_retries == 1  # the CHECK refused the write
    assert isinstance(answer, PaperOrderRejected) and answer.reason == "insufficient_funds"
    assert (await exchange.fetch_balance())["USD"].free == D("100")
    assert await count_orders(box.pool, box.account) == 0


async def test_batches_racing_a_price_walk_conserve_every_balance(box: Sandbox) -> None:
    """Buys and sells of one account in concurrent batches while the price walks: every fill is
    at a price the market really had, and the balances equal the sum of the reported fills."""
    await fund_account(box.pool, box.account, {"USD": D("100000"), box.coin: D("1")})
    exchange = box.exchange()
    stop = asyncio.Event()
    walker = asyncio.create_task(run_price_walk(box.pool, 7, 0.005, stop, volatility=0.01, symbols=box.symbols))
    try:
        batches = [
            exchange.create_orders([order(box.symbol, "buy" if (i + j) % 2 else "sell", "0.01") for j in range(4)])
            for i in range(12)
        ]
        answers = [a for batch in await asyncio.gather(*batches) for a in batch]
    finally:
        stop.set()
        await asyncio.wait_for(walker, 5)
    # A batch that kept meeting price moves answers RetryLater and placed nothing.
    assert all(isinstance(a, OrderResult | RetryLater) for a in answers), answers
    fills = [a for a in answers if isinstance(a, OrderResult)]
    assert len(fills) >= 8  # not vacuous: most batches get through
    usd, coin = balances_after(D("100000"), D("1"), fills)
    balances = await exchange.fetch_balance()
    assert (balances["USD"].total, balances[box.coin].total) == (usd, coin)
    assert await count_orders(box.pool, box.account) == len(fills)
