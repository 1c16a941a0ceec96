"""Valuing a portfolio in its quote currency: pure, no I/O.

Prices come per market ("ETH/BTC": 0.05); a portfolio needs each asset's price in its quote
currency. Direct market first, then the inverse market, then one hop through an intermediate
asset (ADA/USDT then USDT/EUR). A target asset without any route fails the run with a clear
message; a held asset that is not a target and has no route is left out of the valuation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from contracts.v1 import Holding, MarketRule, Strategy
from services.common.exchanges.port import Balance, Market

ONE = Decimal(1)


class ValuationError(Exception):
    code = "valuation_error"


class MissingPrice(ValuationError):
    code = "missing_price"


@dataclass(frozen=True)
class Valuation:
    holdings: list[Holding]
    prices: dict[str, Decimal]  # asset -> price in the quote currency
    total_value: Decimal
    markets: list[MarketRule]
    unpriced: list[str]  # held, not targeted, no route to the quote: not valued


def price_in(asset: str, quote: str, prices: Mapping[str, Decimal]) -> Decimal | None:
    """The price of one ``asset`` in ``quote`` from market prices, or None without a route."""
    if asset == quote:
        return ONE
    direct = prices.get(f"{asset}/{quote}")
    if direct:
        return direct
    inverse = prices.get(f"{quote}/{asset}")
    if inverse:
        return ONE / inverse
    for symbol, price in prices.items():
        base, _, mid = symbol.partition("/")
        if base != asset or not price or mid == quote:
            continue
        hop = prices.get(f"{mid}/{quote}")
        if hop:
            return price * hop
        hop_inverse = prices.get(f"{quote}/{mid}")
        if hop_inverse:
            return price / hop_inverse
    return None


@lru_cache(maxsize=4096)
def market_rule(market: Market) -> MarketRule:
    """The contract's view of a market (frozen both): built once per market and version of its
    rules, not per portfolio, since every portfolio on an exchange shares its markets."""
    return MarketRule(
        symbol=market.symbol,
        base=market.base,
        quote=market.quote,
        min_amount=market.min_amount,
        min_cost=market.min_cost,
        amount_step=market.amount_step,
        price_step=market.price_step,
        maker_fee=market.maker_fee,
        taker_fee=market.taker_fee,
    )


def relevant_markets(assets: Iterable[str], markets: Mapping[str, Market]) -> list[MarketRule]:
    """Active markets between two of the portfolio's assets (its quote currency included)."""
    wanted = set(assets)
    return [market_rule(m) for m in markets.values() if m.active and m.base in wanted and m.quote in wanted]


def value_portfolio(
    strategy: Strategy,
    balances: Mapping[str, Balance],
    prices: Mapping[str, Decimal],
    markets: Mapping[str, Market],
) -> Valuation:
    quote = strategy.quote_currency
    targets = set(strategy.target_weights)
    held = {asset for asset, b in balances.items() if b.total > 0}
    assets = sorted(targets | held | {quote})

    asset_prices: dict[str, Decimal] = {}
    missing: list[str] = []
    unpriced: list[str] = []
    for asset in assets:
        price = price_in(asset, quote, prices)
        if price is not None:
            asset_prices[asset] = price
        elif asset in targets:
            missing.append(asset)
        else:
            unpriced.append(asset)
    if missing:
        names = ", ".join(missing)
        raise MissingPrice(
            f"no price for {names} in {quote}: the exchange lists no {names}/{quote} market"
            " nor a route through another market"
        )

    holdings = [
        Holding(
            asset=asset,
            free=balances[asset].free if asset in balances else Decimal(0),
            total=balances[asset].total if asset in balances else Decimal(0),
        )
        for asset in assets
        if asset in asset_prices
    ]
    total = sum((h.total * asset_prices[h.asset] for h in holdings), Decimal(0))
    return Valuation(
        holdings=holdings,
        prices=asset_prices,
        total_value=total,
        markets=relevant_markets(asset_prices, markets),
        unpriced=unpriced,
    )
