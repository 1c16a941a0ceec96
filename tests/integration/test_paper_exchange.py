"""The paper exchange against real PostgreSQL.

The database is shared by the whole test session, so every test trades its own account on its
own markets (asset names unique to the test) and never moves anyone else's prices.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from services.common.exchanges.paper import (
    DEFAULT_MARKETS,
    FaultCounter,
    PaperConfig,
    PaperExchange,
    PaperOrderRejected,
    account_orders,
    count_orders,
    fund_account,
    paper_market,
    parse_faults,
    random_walk_step,
    run_price_walk,
    seed_markets,
    set_price,
)
from services.common.exchanges.paper_limiter import RateLimiter, limiter_for_account
from services.common.exchanges.paper_rules import plan_order
from services.common.exchanges.port import (
    LegFailed,
    OrderRequest,
    OrderResult,
    OutcomeUnknown,
    RetryLater,
    RunFailed,
)

pytestmark = pytest.mark.integration

D = Decimal


class Sandbox:
    """A unique account and unique coin names over USD for one test."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        tag = uuid.uuid4().hex[:8].upper()
        self.pool = pool
        self.account = f"acct-{tag}"
        self.coin = f"C{tag}"  # like BTC
        self.alt = f"L{tag}"  # like ETH
        self.symbol = f"{self.coin}/USD"
        self.alt_symbol = f"{self.alt}/USD"
        self.cross_symbol = f"{self.alt}/{self.coin}"
        self.markets = [
            paper_market(self.coin, "USD", "50000", amount_step="0.0001", price_step="0.1",
                         min_amount="0.001", min_cost="10"),
            paper_market(self.alt, "USD", "2500", amount_step="0.001", price_step="0.01",
                         min_amount="0.01", min_cost="10"),
            paper_market(self.alt, self.coin, "0.05", amount_step="0.001", price_step="0.00001",
                         min_amount="0.01", min_cost="0.0001"),
        ]
        self.symbols = [m.symbol for m in self.markets]

    def exchange(self, config: PaperConfig | None = None, **kwargs: object) -> PaperExchange:
        return PaperExchange(self.pool, self.account, config=config, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def box(db_pool: asyncpg.Pool) -> Sandbox:
    sandbox = Sandbox(db_pool)
    await seed_markets(db_pool, sandbox.markets)
    await fund_account(db_pool, sandbox.account, {"USD": D("10000")})
    return sandbox


def order(symbol: str, side: str, amount: str, cid: str | None = None, *, price: str | None = None):
    return OrderRequest(
        symbol=symbol, side=side, amount=D(amount),  # type: ignore[arg-type]
        client_order_id=cid or uuid.uuid4().hex,
        order_type="limit" if price is not None else "market",
        price=D(price) if price is not None else None,
    )


async def test_market_buy_fills_at_current_price_and_charges_taker_fee_in_quote(box: Sandbox) -> None:
    exchange = box.exchange()
    result = await exchange.create_order(order(box.symbol, "buy", "0.01", "leg-1"))

    assert result.status == "closed"
    assert (result.filled, result.average_price, result.cost) == (D("0.01"), D("50000.0"), D("500"))
    assert result.fee == D("1.3") and result.fee_currency == "USD"  # 500 * 0.0026
    balances = await exchange.fetch_balance()
    assert balances["USD"].free == D("9498.7")  # 10000 - 500 - 1.3
    assert balances[box.coin].free == balances[box.coin].total == D("0.01")


async def test_market_sell_receives_cost_minus_fee(box: Sandbox) -> None:
    await fund_account(box.pool, box.account, {box.coin: D("0.5")})
    exchange = box.exchange()
    result = await exchange.create_order(order(box.symbol, "sell", "0.2"))

    assert (result.cost, result.fee) == (D("10000"), D("26"))
    balances = await exchange.fetch_balance()
    assert balances[box.coin].free == D("0.3")
    assert balances["USD"].free == D("10000") + D("10000") - D("26")


async def test_cross_pair_charges_fee_in_its_quote(box: Sandbox) -> None:
    await fund_account(box.pool, box.account, {box.coin: D("1")})
    result = await box.exchange().create_order(order(box.cross_symbol, "buy", "2"))
    assert (result.cost, result.fee, result.fee_currency) == (D("0.1"), D("0.00026"), box.coin)
    balances = await box.exchange().fetch_balance()
    assert balances[box.coin].free == D("1") - D("0.10026")
    assert balances[box.alt].free == D("2")


async def test_insufficient_funds_refuses_and_changes_nothing(box: Sandbox) -> None:
    exchange = box.exchange()
    with pytest.raises(LegFailed, match=r"insufficient funds.*needs 10026\.0+ USD, free 10000") as caught:
        await exchange.create_order(order(box.symbol, "buy", "0.2", "too-big"))
    assert isinstance(caught.value, PaperOrderRejected) and caught.value.reason == "insufficient_funds"
    assert (await exchange.fetch_balance())["USD"].free == D("10000")
    assert await count_orders(box.pool, box.account) == 0
    assert await exchange.fetch_order_by_client_id(box.symbol, "too-big") is None
    with pytest.raises(LegFailed, match="insufficient funds"):
        await exchange.create_order(order(box.symbol, "sell", "0.01"))  # holds no coin at all


@pytest.mark.parametrize(
    ("amount", "reason", "message"),
    [
        ("0.0005", "below_min_amount", r"below the minimum amount 0\.001"),
        ("0.00015", "amount_precision", r"not a multiple of the amount step 0\.0001"),
        ("0", "invalid_amount", "must be positive"),
    ],
)
async def test_exchange_limits_refuse_orders_naming_the_limit(
    box: Sandbox, amount: str, reason: str, message: str
) -> None:
    with pytest.raises(PaperOrderRejected, match=message) as caught:
        await box.exchange().create_order(order(box.symbol, "buy", amount))
    assert caught.value.reason == reason
    assert await count_orders(box.pool, box.account) == 0


async def test_min_cost_uses_the_current_price(box: Sandbox) -> None:
    exchange = box.exchange()
    await exchange.create_order(order(box.alt_symbol, "buy", "0.01"))  # 25 USD: allowed
    await set_price(box.pool, box.alt_symbol, D("500"))
    with pytest.raises(PaperOrderRejected, match=r"cost 5\.0+ USD is below the minimum cost 10") as caught:
        await exchange.create_order(order(box.alt_symbol, "buy", "0.01"))
    assert caught.value.reason == "below_min_cost"


async def test_unknown_symbol_and_off_tick_limit_price_are_refused(box: Sandbox) -> None:
    with pytest.raises(PaperOrderRejected, match="unknown symbol") as unknown:
        await box.exchange().create_order(order("NOPE/USD", "buy", "1"))
    assert unknown.value.reason == "unknown_symbol"
    with pytest.raises(PaperOrderRejected, match=r"price step 0\.1") as tick:
        await box.exchange().create_order(order(box.symbol, "buy", "0.01", price="49000.05"))
    assert tick.value.reason == "price_precision"


async def test_state_is_shared_between_processes(box: Sandbox, database_url: str) -> None:
    other_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        executor_side = box.exchange()
        pricer_side = PaperExchange(other_pool, box.account)
        await executor_side.create_order(order(box.symbol, "buy", "0.01"))
        assert (await pricer_side.fetch_balance())[box.coin].total == D("0.01")

        await set_price(other_pool, box.symbol, D("51000"))
        assert (await executor_side.fetch_prices([box.symbol])) == {box.symbol: D("51000")}
    finally:
        await other_pool.close()


async def test_load_markets_and_fetch_prices(box: Sandbox) -> None:
    exchange = box.exchange()
    markets = await exchange.load_markets()
    market = markets[box.symbol]
    assert (market.base, market.quote) == (box.coin, "USD")
    assert (market.min_amount, market.min_cost) == (D("0.001"), D("10"))
    assert (market.amount_step, market.price_step) == (D("0.0001"), D("0.1"))
    assert (market.maker_fee, market.taker_fee) == (D("0.0016"), D("0.0026"))
    prices = await exchange.fetch_prices(box.symbols)
    assert prices == {box.symbol: D("50000"), box.alt_symbol: D("2500"), box.cross_symbol: D("0.05")}
    assert box.symbol in await exchange.fetch_prices()


async def test_seeding_defaults_is_idempotent_and_offers_over_120_assets(db_pool: asyncpg.Pool) -> None:
    await seed_markets(db_pool)
    await seed_markets(db_pool)
    markets = await PaperExchange(db_pool, "nobody").load_markets()
    assert {m.symbol for m in DEFAULT_MARKETS} <= set(markets)
    usd_assets = {m.base for m in markets.values() if m.quote == "USD"}
    assert len(usd_assets) >= 120
    assert {"BTC", "ETH", "SOL", "ADA", "USDC", "DOT", "LINK", "AVAX", "XRP", "DOGE"} <= usd_assets
    assert {"ETH/BTC", "SOL/BTC", "EUR/USDT"} <= set(markets)
    assert markets["BTC/USD"].min_cost == D("10")


async def test_reseeding_keeps_a_walked_price_unless_reset(box: Sandbox) -> None:
    await set_price(box.pool, box.symbol, D("42000"))
    await seed_markets(box.pool, box.markets)
    assert (await box.exchange().fetch_prices([box.symbol]))[box.symbol] == D("42000")
    await seed_markets(box.pool, box.markets, reset_prices=True)
    assert (await box.exchange().fetch_prices([box.symbol]))[box.symbol] == D("50000")


async def test_seeded_walk_is_deterministic_and_keeps_cross_pairs_consistent(box: Sandbox) -> None:
    async def walk(seed: int) -> list[dict[str, Decimal]]:
        await seed_markets(box.pool, box.markets, reset_prices=True)
        rng = random.Random(seed)
        return [await random_walk_step(box.pool, rng, 0.01, symbols=box.symbols) for _ in range(5)]

    first, again, other = await walk(7), await walk(7), await walk(8)
    assert first == again
    assert first != other
    assert (await box.exchange().fetch_prices(box.symbols)) == other[-1]
    last = first[-1]
    assert last[box.symbol] != D("50000")
    implied = last[box.alt_symbol] / last[box.symbol]
    assert abs(implied - last[box.cross_symbol]) / implied < D("0.001")


async def test_duplicate_client_id_after_a_fill_executes_again(box: Sandbox) -> None:
    """Documented exchange behaviour: ids are unique only among open orders."""
    exchange = box.exchange()
    first = await exchange.create_order(order(box.symbol, "buy", "0.01", "same-id"))
    second = await exchange.create_order(order(box.symbol, "buy", "0.01", "same-id"))

    assert first.exchange_order_id != second.exchange_order_id
    assert await count_orders(box.pool, box.account, client_order_id="same-id") == 2
    assert (await exchange.fetch_balance())[box.coin].total == D("0.02")
    found = await exchange.fetch_order_by_client_id(box.symbol, "same-id")
    assert found is not None and found.exchange_order_id == second.exchange_order_id
    assert await exchange.fetch_order_by_client_id(box.alt_symbol, "same-id") is None


async def test_limit_buy_rests_locks_funds_and_fills_at_its_price_when_crossed(box: Sandbox) -> None:
    exchange = box.exchange()
    placed = await exchange.create_order(order(box.symbol, "buy", "0.1", "limit-1", price="49000"))
    assert placed.status == "open" and placed.filled == 0
    locked = D("4900") + D("4900") * D("0.0016")
    usd = (await exchange.fetch_balance())["USD"]
    assert (usd.free, usd.total) == (D("10000") - locked, D("10000"))

    await set_price(box.pool, box.symbol, D("49500"))  # not yet
    still = await exchange.fetch_order_by_client_id(box.symbol, "limit-1")
    assert still is not None and still.status == "open"

    await set_price(box.pool, box.symbol, D("48000"))  # gaps through: a maker fills at its limit
    filled = await exchange.fetch_order_by_client_id(box.symbol, "limit-1")
    assert filled is not None
    assert (filled.status, filled.filled, filled.average_price) == ("closed", D("0.1"), D("49000"))
    assert (filled.cost, filled.fee, filled.fee_currency) == (D("4900"), D("7.84"), "USD")
    balances = await exchange.fetch_balance()
    assert (balances["USD"].free, balances["USD"].total) == (D("10000") - locked, D("10000") - locked)
    assert balances[box.coin].free == D("0.1")


async def test_limit_sell_cancel_releases_funds_and_cancel_after_fill_reports_the_fill(box: Sandbox) -> None:
    await fund_account(box.pool, box.account, {box.coin: D("1")})
    exchange = box.exchange()
    resting = await exchange.create_order(order(box.symbol, "sell", "0.4", "ask-1", price="52000"))
    assert (await exchange.fetch_balance())[box.coin].free == D("0.6")
    with pytest.raises(PaperOrderRejected, match="already exists") as duplicate:
        await exchange.create_order(order(box.symbol, "sell", "0.1", "ask-1", price="53000"))
    assert duplicate.value.reason == "duplicate_client_order_id"

    assert resting.exchange_order_id is not None
    canceled = await exchange.cancel_order(box.symbol, resting.exchange_order_id)
    assert canceled.status == "canceled"
    coin = (await exchange.fetch_balance())[box.coin]
    assert (coin.free, coin.total) == (D("1"), D("1"))
    await set_price(box.pool, box.symbol, D("60000"))
    assert (await exchange.fetch_balance())[box.coin].total == D("1")  # a canceled order never fills

    second = await exchange.create_order(order(box.symbol, "sell", "0.4", "ask-1", price="61000"))
    await set_price(box.pool, box.symbol, D("61000"))
    assert second.exchange_order_id is not None
    after = await exchange.cancel_order(box.symbol, second.exchange_order_id)
    assert (after.status, after.cost, after.fee) == ("closed", D("24400"), D("39.04"))
    with pytest.raises(PaperOrderRejected, match="no paper order") as missing:
        await exchange.cancel_order(box.symbol, "999999999")
    assert missing.value.reason == "order_not_found"


async def test_limit_that_already_crosses_fills_at_once_at_the_market_price(box: Sandbox) -> None:
    result = await box.exchange().create_order(order(box.symbol, "buy", "0.01", price="55000"))
    assert (result.status, result.average_price, result.fee) == ("closed", D("50000.0"), D("1.3"))


async def test_price_walk_fills_resting_orders(box: Sandbox) -> None:
    exchange = box.exchange()
    await exchange.create_order(order(box.symbol, "buy", "0.01", "dip", price="49000"))
    rng = random.Random(3)
    price = D("50000")
    for _ in range(500):
        price = (await random_walk_step(box.pool, rng, 0.02, symbols=box.symbols))[box.symbol]
        if price <= D("49000"):
            break
    assert price <= D("49000"), "the walk never reached the limit; pick another seed"
    filled = await exchange.fetch_order_by_client_id(box.symbol, "dip")
    assert filled is not None and (filled.status, filled.average_price) == ("closed", D("49000"))


async def test_run_price_walk_steps_until_stopped(box: Sandbox) -> None:
    stop = asyncio.Event()
    walker = asyncio.create_task(run_price_walk(box.pool, 11, 0.01, stop, symbols=box.symbols))
    for _ in range(500):
        await asyncio.sleep(0.01)
        if (await box.exchange().fetch_prices([box.symbol]))[box.symbol] != D("50000"):
            break
    stop.set()
    steps = await asyncio.wait_for(walker, 5)
    assert steps >= 1
    assert (await box.exchange().fetch_prices([box.symbol]))[box.symbol] != D("50000")


async def test_concurrent_orders_never_overdraw(box: Sandbox) -> None:
    """Funds for exactly 10 buys of 0.019 (952.47 USD each); 20 race for them."""
    await fund_account(box.pool, box.account, {"USD": D("9524.70")})
    exchange = box.exchange()
    results = await asyncio.gather(
        *(exchange.create_order(order(box.symbol, "buy", "0.019")) for _ in range(20)),
        return_exceptions=True,
    )
    filled = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, PaperOrderRejected) and r.reason == "insufficient_funds"]
    assert (len(filled), len(refused)) == (10, 10)
    balances = await exchange.fetch_balance()
    assert "USD" not in balances  # spent to the cent
    assert balances[box.coin].total == D("0.19")
    assert await count_orders(box.pool, box.account) == 10


async def test_drop_response_commits_the_trade_then_reports_outcome_unknown(box: Sandbox) -> None:
    config = PaperConfig(faults=parse_faults("drop_response=1"), fault_counter=FaultCounter())
    exchange = box.exchange(config)
    with pytest.raises(OutcomeUnknown, match="answer lost"):
        await exchange.create_order(order(box.symbol, "buy", "0.01", "lost-ack"))

    found = await exchange.fetch_order_by_client_id(box.symbol, "lost-ack")
    assert found is not None and (found.status, found.filled, found.fee) == ("closed", D("0.01"), D("1.3"))
    assert await count_orders(box.pool, box.account, client_order_id="lost-ack") == 1
    assert (await exchange.fetch_balance())[box.coin].total == D("0.01")
    second = await exchange.create_order(order(box.symbol, "buy", "0.01"))  # call 2: no fault
    assert second.status == "closed"


async def test_faults_that_fire_before_execution_change_nothing(box: Sandbox) -> None:
    counter = FaultCounter()
    config = PaperConfig(
        faults=parse_faults("timeout=1,unavailable=2,reject_insufficient=3,auth=4"), fault_counter=counter
    )
    exchange = box.exchange(config)
    expected = [OutcomeUnknown, RetryLater, LegFailed, RunFailed]
    for number, error in enumerate(expected, start=1):
        with pytest.raises(error):
            await exchange.create_order(order(box.symbol, "buy", "0.01", f"f{number}"))
        assert await exchange.fetch_order_by_client_id(box.symbol, f"f{number}") is None
    assert counter.calls == 4
    assert await account_orders(box.pool, box.account) == []
    assert (await exchange.fetch_balance())["USD"].free == D("10000")


async def test_every_nth_fault_and_shared_counter_across_instances(box: Sandbox) -> None:
    config = PaperConfig(faults=parse_faults("unavailable=every:2"), fault_counter=FaultCounter())
    first, second = box.exchange(config), box.exchange(config)
    outcomes = []
    for exchange in (first, second, first, second):
        try:
            await exchange.create_order(order(box.symbol, "buy", "0.01"))
            outcomes.append("filled")
        except RetryLater:
            outcomes.append("retry")
    assert outcomes == ["filled", "retry", "filled", "retry"]
    assert await count_orders(box.pool, box.account) == 2


async def test_latency_is_waited_before_every_answer(box: Sandbox) -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    exchange = box.exchange(PaperConfig(latency_seconds=0.05), sleep=record)
    await exchange.load_markets()
    await exchange.fetch_balance()
    await exchange.fetch_prices()
    await exchange.create_order(order(box.symbol, "buy", "0.01", "lat"))
    await exchange.fetch_order_by_client_id(box.symbol, "lat")
    assert slept == [0.05] * 5


async def test_rate_limit_spaces_calls_of_one_account(box: Sandbox) -> None:
    now = [100.0]
    slept: list[float] = []

    async def advance(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(10, clock=lambda: now[0])
    exchange = box.exchange(PaperConfig(rate_limit_per_second=10), sleep=advance, limiter=limiter)
    for _ in range(4):
        await exchange.fetch_balance()
    assert slept == pytest.approx([0.1, 0.2, 0.3])  # the clock stood still: calls queue up
    now[0] += 10.0
    await exchange.fetch_balance()
    assert len(slept) == 3  # after a pause the next call goes at once

    shared = limiter_for_account(box.account, 5.0)
    assert box.exchange(PaperConfig(rate_limit_per_second=5))._limiter is shared
    assert PaperExchange(box.pool, box.account + "-other", config=PaperConfig(rate_limit_per_second=5)
                         )._limiter is not shared


async def test_account_orders_lists_every_order_oldest_first(box: Sandbox) -> None:
    exchange = box.exchange()
    await exchange.create_order(order(box.symbol, "buy", "0.01", "a"))
    await exchange.create_order(order(box.symbol, "buy", "0.01", "b", price="40000"))
    orders = await account_orders(box.pool, box.account)
    assert [(o.client_order_id, o.status, o.type) for o in orders] == [
        ("a", "closed", "market"), ("b", "open", "limit")
    ]
    assert await count_orders(box.pool, box.account, status="open") == 1
    assert await count_orders(box.pool, box.account, symbol=box.alt_symbol) == 0


def balances_after(usd: Decimal, coin: Decimal, fills: Iterable[OrderResult]) -> tuple[Decimal, Decimal]:
    """USD and coin from these starting amounts after the reported fills (each closed; fees in USD)."""
    for fill in fills:
        assert fill.status == "closed"
        if fill.side == "buy":
            usd, coin = usd - fill.cost - fill.fee, coin + fill.filled
        else:
            usd, coin = usd + fill.cost - fill.fee, coin - fill.filled
    return usd, coin


async def test_mixed_concurrent_orders_conserve_every_balance(box: Sandbox) -> None:
    """Opposite orders touch the same two balance rows; they lock them in one order, so none
    deadlocks, and whatever the interleaving the balances equal the sum of the reported fills."""
    await fund_account(box.pool, box.account, {"USD": D("100000"), box.coin: D("1")})
    exchange = box.exchange()
    requests = [order(box.symbol, "buy" if i % 2 else "sell", "0.01") for i in range(40)]
    results = await asyncio.gather(*(exchange.create_order(r) for r in requests))

    usd, coin = balances_after(D("100000"), D("1"), results)
    balances = await exchange.fetch_balance()
    assert (balances["USD"].total, balances[box.coin].total) == (usd, coin)
    assert await count_orders(box.pool, box.account) == 40
    assert exchange.rolled_back_retries == 0


async def test_a_resting_order_priced_on_a_stale_quote_is_not_left_resting(box: Sandbox) -> None:
    """The price can cross between reading it and placing: the placing statement re-checks."""
    exchange = box.exchange()
    stale_quote = (await exchange._read_market(box.symbol))
    assert stale_quote is not None
    request = order(box.symbol, "buy", "0.01", "stale", price="49000")
    stale_plan = plan_order(stale_quote, request)
    assert stale_plan.status == "open"
    await set_price(box.pool, box.symbol, D("48000"))

    assert await exchange._place(request, stale_plan) is None
    assert await count_orders(box.pool, box.account) == 0
    assert (await exchange.fetch_balance())["USD"].free == D("10000")
    result = await exchange.create_order(request)  # re-reads the price: fills now, as taker
    assert (result.status, result.average_price) == ("closed", D("48000"))


async def test_faults_from_the_environment_number_the_orders_of_the_process(
    box: Sandbox, database_url: str
) -> None:
    script = f"""
import asyncio, asyncpg
from decimal import Decimal
from services.common.exchanges.paper import PaperConfig, PaperExchange
from services.common.exchanges.port import OrderRequest, OutcomeUnknown

async def main():
    pool = await asyncpg.create_pool({database_url!r}, min_size=1, max_size=1)
    config = PaperConfig.from_env()
    assert config.latency_seconds == 0.001 and config.rate_limit_per_second == 500
    for number in (1, 2, 3):
        exchange = PaperExchange(pool, {box.account!r}, config=config)  # a fresh instance each time
        try:
            await exchange.create_order(OrderRequest({box.symbol!r}, "buy", Decimal("0.01"), f"env-{{number}}"))
            print(number, "ok")
        except OutcomeUnknown:
            print(number, "unknown")
    await pool.close()

asyncio.run(main())
"""
    env = {**os.environ, "PAPER_FAULTS": "drop_response=2", "PAPER_LATENCY_MS": "1", "PAPER_RATE_LIMIT": "500"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env, cwd=str(Path(__file__).parents[2]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert out.decode().split("\n")[:3] == ["1 ok", "2 unknown", "3 ok"]
    assert await count_orders(box.pool, box.account) == 3  # the dropped answer's order executed too


async def test_a_stale_resting_plan_is_replanned_even_when_its_lock_would_not_fit(box: Sandbox) -> None:
    """Funds cover the taker fill at the new price but not the stale plan's lock at the limit."""
    await fund_account(box.pool, box.account, {"USD": D("9500")})
    exchange = box.exchange()
    stale_quote = await exchange._read_market(box.symbol)
    assert stale_quote is not None
    request = order(box.symbol, "buy", "0.2", "stale-2", price="49000")
    stale_plan = plan_order(stale_quote, request)
    assert stale_plan.lock == D("9815.68")
    await set_price(box.pool, box.symbol, D("45000"))

    assert await exchange._place(request, stale_plan) is None
    await exchange._explain_refusal(request, stale_plan)  # says "try again", not "insufficient"
    result = await exchange.create_order(request)
    assert (result.status, result.cost, result.fee) == ("closed", D("9000"), D("23.4"))
