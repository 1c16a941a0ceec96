"""The default paper markets: realistic, consistent rules and enough assets for the benchmark."""

from __future__ import annotations

from decimal import Decimal

from services.common.exchanges.paper_markets import DEFAULT_MARKETS, synthetic_asset, synthetic_markets


def test_symbols_are_unique_and_well_formed() -> None:
    symbols = [m.symbol for m in DEFAULT_MARKETS]
    assert len(symbols) == len(set(symbols))
    assert all(m.symbol == f"{m.market.base}/{m.market.quote}" for m in DEFAULT_MARKETS)


def test_real_majors_cross_pairs_and_synthetic_assets_are_present() -> None:
    by_symbol = {m.symbol: m for m in DEFAULT_MARKETS}
    for base in ("BTC", "ETH", "SOL", "ADA", "USDC", "DOT", "LINK", "AVAX", "XRP", "DOGE"):
        assert f"{base}/USD" in by_symbol
    assert {"ETH/BTC", "SOL/BTC", "EUR/USDT", "BTC/EUR"} <= set(by_symbol)
    usd_bases = {m.market.base for m in DEFAULT_MARKETS if m.market.quote == "USD"}
    assert len(usd_bases) >= 120
    assert synthetic_asset(150) == "A150" and "A150" in usd_bases
    btc = by_symbol["BTC/USD"].market
    assert btc.min_cost == Decimal("10")
    assert (btc.maker_fee, btc.taker_fee) == (Decimal("0.0016"), Decimal("0.0026"))


def test_every_market_has_a_price_on_its_tick_and_a_tradeable_minimum() -> None:
    for paper in DEFAULT_MARKETS:
        rules = paper.market
        assert rules.price_step is not None and rules.amount_step is not None
        assert paper.price > 0 and paper.price % rules.price_step == 0, paper.symbol
        assert rules.min_amount is not None and rules.min_amount % rules.amount_step == 0, paper.symbol
        # 1,000 USD worth of any USD market must be buyable within its rules.
        if rules.quote == "USD" and rules.min_cost is not None:
            assert rules.min_cost <= 10 and rules.min_amount * paper.price <= 1000, paper.symbol


def test_cross_prices_agree_with_usd_prices() -> None:
    by_symbol = {m.symbol: m.price for m in DEFAULT_MARKETS}
    implied = by_symbol["ETH/USD"] / by_symbol["BTC/USD"]
    assert abs(by_symbol["ETH/BTC"] - implied) / implied < Decimal("0.001")


def test_synthetic_markets_are_reproducible() -> None:
    assert synthetic_markets(10) == synthetic_markets(10)
    assert synthetic_markets(10, seed=1) != synthetic_markets(10, seed=2)
