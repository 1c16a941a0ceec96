from decimal import Decimal as D

import pytest

from contracts.v1 import Strategy
from services.common.exchanges.port import Balance, Market
from services.pricer.valuation import MissingPrice, market_rule, price_in, value_portfolio


def strategy(weights: dict[str, str], quote: str = "USD") -> Strategy:
    return Strategy(portfolio_id="p", user_id="u", name="n", connection_id="c", exchange_id="paper",
                    target_weights={k: D(v) for k, v in weights.items()}, quote_currency=quote)


def market(symbol: str) -> Market:
    base, quote = symbol.split("/")
    return Market(symbol=symbol, base=base, quote=quote)


def test_direct_inverse_and_one_hop_prices() -> None:
    prices = {"BTC/USD": D("60000"), "USD/JPY": D("150"), "ADA/USDT": D("0.5"), "USDT/USD": D("1.001"),
              "DOT/EUR": D("5"), "USD/EUR": D("0.9")}
    assert price_in("USD", "USD", prices) == 1
    assert price_in("BTC", "USD", prices) == D("60000")
    assert price_in("JPY", "USD", prices) == 1 / D("150")
    assert price_in("ADA", "USD", prices) == D("0.5") * D("1.001")
    assert price_in("DOT", "USD", prices) == D("5") / D("0.9")
    assert price_in("XYZ", "USD", prices) is None


def test_portfolio_value_holdings_and_relevant_markets() -> None:
    markets = {s: market(s) for s in ("BTC/USD", "ETH/USD", "ETH/BTC", "SOL/USD", "DOGE/USD")}
    prices = {"BTC/USD": D("60000"), "ETH/USD": D("3000"), "ETH/BTC": D("0.05"), "SOL/USD": D("150"),
              "DOGE/USD": D("0.1")}
    balances = {"USD": Balance(D("1000"), D("1000")), "BTC": Balance(D("0.1"), D("0.1")),
                "DOGE": Balance(D("100"), D("100"))}
    v = value_portfolio(strategy({"BTC": "50", "ETH": "50"}), balances, prices, markets)
    assert v.total_value == D("1000") + D("6000") + D("10")
    assert {h.asset for h in v.holdings} == {"USD", "BTC", "ETH", "DOGE"}  # ETH targeted though not held
    assert {m.symbol for m in v.markets} == {"BTC/USD", "ETH/USD", "ETH/BTC", "DOGE/USD"}  # no SOL: not ours
    assert v.unpriced == []


def test_a_target_without_price_fails_with_a_clear_message() -> None:
    with pytest.raises(MissingPrice, match="no price for XYZ in EUR"):
        value_portfolio(strategy({"BTC": "50", "XYZ": "50"}, quote="EUR"), {}, {"BTC/EUR": D("55000")}, {})


def test_a_held_non_target_without_any_route_is_left_out_not_fatal() -> None:
    balances = {"USD": Balance(D("10"), D("10")), "AIRDROP": Balance(D("5"), D("5"))}
    v = value_portfolio(strategy({"USD": "100"}), balances, {}, {})
    assert v.unpriced == ["AIRDROP"] and v.total_value == D("10")


def test_a_market_rule_is_built_once_per_market_and_anew_when_its_rules_change() -> None:
    market = Market("BTC/USD", "BTC", "USD", min_amount=D("0.0001"), amount_step=D("0.00001"))
    rule = market_rule(market)
    assert (rule.symbol, rule.min_amount, rule.amount_step) == ("BTC/USD", D("0.0001"), D("0.00001"))
    assert market_rule(Market("BTC/USD", "BTC", "USD", min_amount=D("0.0001"), amount_step=D("0.00001"))) is rule
    changed = market_rule(Market("BTC/USD", "BTC", "USD", min_amount=D("0.001"), amount_step=D("0.00001")))
    assert changed is not rule and changed.min_amount == D("0.001")
