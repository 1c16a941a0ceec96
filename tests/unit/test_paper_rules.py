"""Pure rules of the paper exchange: validation, fills, fees, matching moves and the walk."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.exchanges.paper_markets import paper_market
from services.common.exchanges.paper_rules import (
    PaperOrderRejected,
    RestingOrder,
    crosses,
    fill_resting,
    merge_balance_moves,
    plan_order,
    round_to_step,
    validate_order,
    walk_factors,
    walk_prices,
)
from services.common.exchanges.port import LegFailed, OrderRequest

D = Decimal
BTC = paper_market("BTC", "USD", "60000", amount_step="0.0001", price_step="0.1", min_amount="0.001",
                   min_cost="10")
ETH_BTC = paper_market("ETH", "BTC", "0.05", amount_step="0.001", price_step="0.00001", min_cost="0.0001")


def request(amount: str, side: str = "buy", price: str | None = None, symbol: str = "BTC/USD"):
    return OrderRequest(symbol=symbol, side=side, amount=D(amount), client_order_id="c",  # type: ignore[arg-type]
                        order_type="limit" if price else "market", price=D(price) if price else None)


@pytest.mark.parametrize(
    ("req", "reason", "fragment"),
    [
        (request("0.0005"), "below_min_amount", "below the minimum amount 0.001 for BTC/USD"),
        (request("0.00123"), "amount_precision", "amount step 0.0001"),
        (request("-1"), "invalid_amount", "must be positive"),
        (request("0.001", price="5000"), "below_min_cost", "cost 5.000 USD is below the minimum cost 10"),
        (request("0.01", price="60000.01"), "price_precision", "price step 0.1"),
        (OrderRequest("BTC/USD", "buy", D("0.01"), "c", "limit", None), "invalid_price",
         "needs a positive price"),
    ],
)
def test_validation_names_the_rule_broken(req: OrderRequest, reason: str, fragment: str) -> None:
    with pytest.raises(PaperOrderRejected) as caught:
        validate_order(BTC, req)
    assert caught.value.reason == reason
    assert fragment in str(caught.value)
    assert isinstance(caught.value, LegFailed)


def test_unknown_symbol_and_inactive_market_are_refused() -> None:
    with pytest.raises(PaperOrderRejected, match="unknown symbol 'XYZ/USD'"):
        validate_order(None, request("1", symbol="XYZ/USD"))
    inactive = paper_market("BTC", "USD", "60000", amount_step="0.0001", price_step="0.1")
    inactive = type(inactive)(replace(inactive.market, active=False), inactive.price)
    with pytest.raises(PaperOrderRejected, match="not active"):
        validate_order(inactive, request("0.001"))


def test_min_cost_of_a_market_order_uses_the_current_price() -> None:
    validate_order(BTC, request("0.001"))  # 60 USD
    cheap = paper_market("BTC", "USD", "5000", amount_step="0.0001", price_step="0.1", min_amount="0.001")
    with pytest.raises(PaperOrderRejected, match="minimum cost"):
        validate_order(cheap, request("0.001"))  # 5 USD


def test_market_buy_pays_cost_plus_taker_fee_in_quote() -> None:
    plan = plan_order(BTC, request("0.01"))
    assert (plan.debit_asset, plan.debit) == ("USD", D("601.56"))
    assert (plan.credit_asset, plan.credit) == ("BTC", D("0.01"))
    assert (plan.status, plan.cost, plan.fee, plan.fee_currency, plan.lock) == (
        "closed", D("600"), D("1.56"), "USD", D(0))


def test_market_sell_receives_cost_minus_taker_fee() -> None:
    plan = plan_order(ETH_BTC, request("2", "sell", symbol="ETH/BTC"))
    assert (plan.debit_asset, plan.debit) == ("ETH", D("2"))
    assert (plan.credit_asset, plan.credit) == ("BTC", D("0.09974"))  # 0.1 - 0.26%
    assert plan.fee_currency == "BTC"


def test_resting_limit_orders_lock_what_their_fill_needs() -> None:
    buy = plan_order(BTC, request("0.1", price="59000"))
    assert (buy.status, buy.debit_asset, buy.lock, buy.debit, buy.credit) == (
        "open", "USD", D("5909.44"), D("5909.44"), D(0))  # 5900 + 0.16% maker fee
    sell = plan_order(BTC, request("0.1", "sell", price="61000"))
    assert (sell.status, sell.debit_asset, sell.lock) == ("open", "BTC", D("0.1"))


def test_a_crossing_limit_fills_at_once_as_taker_at_the_market_price() -> None:
    plan = plan_order(BTC, request("0.1", price="65000"))
    assert (plan.status, plan.average_price, plan.fee) == ("closed", D("60000"), D("15.6"))


def test_crossing_direction() -> None:
    assert crosses("buy", D("100"), D("100")) and crosses("buy", D("100"), D("99"))
    assert not crosses("buy", D("100"), D("101"))
    assert crosses("sell", D("100"), D("101")) and not crosses("sell", D("100"), D("99"))


def test_resting_buy_fill_consumes_its_lock_exactly() -> None:
    lock = plan_order(BTC, request("0.1", price="59000")).lock
    fill = fill_resting(RestingOrder(7, "acct", "buy", D("0.1"), D("59000"), "USD", lock), BTC.market)
    assert (fill.cost, fill.fee, fill.fee_currency) == (D("5900"), D("9.44"), "USD")
    assert fill.balance_moves == (("acct", "USD", D(0), -lock), ("acct", "BTC", D("0.1"), D(0)))


def test_resting_sell_fill_credits_quote_minus_maker_fee() -> None:
    fill = fill_resting(RestingOrder(8, "acct", "sell", D("0.1"), D("61000"), "BTC", D("0.1")), BTC.market)
    assert fill.balance_moves == (("acct", "BTC", D(0), D("-0.1")), ("acct", "USD", D("6090.24"), D(0)))


def test_balance_moves_merge_per_account_and_asset_in_lock_order() -> None:
    merged = merge_balance_moves([
        ("b", "USD", D("1"), D("0")), ("a", "USD", D("2"), D("-1")), ("b", "USD", D("3"), D("-2")),
    ])
    assert merged == [("a", "USD", D("2"), D("-1")), ("b", "USD", D("4"), D("-2"))]


def test_round_to_step() -> None:
    assert round_to_step(D("123.456"), D("0.01")) == D("123.46")
    assert round_to_step(D("0.0001"), D("0.01")) == D("0.01")  # never rounds a price to zero
    assert round_to_step(D("1.23456789012345"), None) == D("1.23456789012")


def test_walk_is_deterministic_per_seed_and_keeps_pegged_assets_fixed() -> None:
    markets = [BTC, ETH_BTC, paper_market("ETH", "USD", "3000", amount_step="0.001", price_step="0.01")]
    first = walk_prices(markets, random.Random(5), 0.01)
    assert first == walk_prices(markets, random.Random(5), 0.01)
    assert first != walk_prices(markets, random.Random(6), 0.01)
    assert walk_factors(["USD", "USDT", "USDC"], random.Random(1), 0.5) == {"USD": 1, "USDT": 1, "USDC": 1}
    implied = first["ETH/USD"] / first["BTC/USD"]
    assert abs(implied - first["ETH/BTC"]) / implied < D("0.001")


@given(seed=st.integers(0, 10_000), volatility=st.floats(0.0, 2.0), steps=st.integers(1, 20))
def test_walked_prices_stay_positive_and_on_their_step(seed: int, volatility: float, steps: int) -> None:
    rng = random.Random(seed)
    markets = [BTC, ETH_BTC]
    for _ in range(steps):
        prices = walk_prices(markets, rng, volatility)
        markets = [type(m)(m.market, prices[m.symbol]) for m in markets]
    for market in markets:
        assert market.price > 0
        assert market.price % market.market.price_step == 0  # type: ignore[operator]


@given(amount_steps=st.integers(10, 10_000), price_ticks=st.integers(1, 10**7))
def test_a_resting_buy_lock_always_covers_its_fill(amount_steps: int, price_ticks: int) -> None:
    amount, price = D(amount_steps) * D("0.0001"), D(price_ticks) * D("0.1")
    plan = plan_order(paper_market("BTC", "USD", "999999999", amount_step="0.0001", price_step="0.1"),
                      request(str(amount), price=str(price)))
    fill = fill_resting(RestingOrder(1, "a", "buy", amount, price, "USD", plan.lock), BTC.market)
    released, used = fill.balance_moves[0][2], fill.balance_moves[0][3]
    assert released == 0 and used == -plan.lock
