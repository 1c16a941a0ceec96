"""Direct pairs: one ETH/BTC order instead of selling ETH and buying BTC through the quote.

A direct pair is used only when its fee is lower than the two legs through the quote together,
or when one of those legs has no market at all, and only when the direct order clears the pair's
own minimums. Whatever it does not cover still goes through the quote.
"""

from __future__ import annotations

from decimal import Decimal

from contracts.v1.strategy import MarketRule, OrderType
from services.planner.legs import Leg, MarketIndex, fee_rate, fit_leg
from services.planner.valuation import ONE, Position

# Ranks a pair that is the only way to trade above any fee saving.
_ONLY_ROUTE = Decimal(1)


def route_direct(
    sells: dict[str, Decimal],
    buys: dict[str, Decimal],
    positions: dict[str, Position],
    index: MarketIndex,
    quote: str,
    order_type: OrderType,
    noise: Decimal,
    saving_pairs: bool = True,
) -> list[Leg]:
    """Direct legs between assets to sell and assets to buy, best fee saving first; without
    ``saving_pairs``, only the pairs that are the only route for one of their assets.

    ``sells`` holds base amounts to sell and ``buys`` values to buy (quote currency); both are
    reduced by what the direct legs cover.
    """
    candidates: list[tuple[Decimal, str, str, str, MarketRule]] = []
    for asset in [a for a, amount in sells.items() if amount * positions[a].price <= noise]:
        del sells[asset]
    for asset in [a for a, value in buys.items() if value <= noise]:
        del buys[asset]
    for sold in sells:
        for market in index.between(sold):
            bought = market.quote if market.base == sold else market.base
            if bought not in buys:
                continue
            saving = _fee_saving(market, sold, bought, index, quote, order_type)
            if saving is not None and (saving_pairs or saving == _ONLY_ROUTE):
                candidates.append((saving, market.symbol, sold, bought, market))
    if not candidates:
        return []
    candidates.sort(key=lambda c: (-c[0], c[1]))

    legs: list[Leg] = []
    for _, _, sold, bought, market in candidates:
        amount_sold, value_bought = sells[sold], buys[bought]
        sold_price, bought_price = positions[sold].price, positions[bought].price
        if amount_sold * sold_price <= noise or value_bought <= noise:
            continue
        fee = fee_rate(market, order_type)
        if market.base == sold:  # sell the overweight asset for the underweight one
            wanted = min(amount_sold, value_bought / (ONE - fee) / sold_price)
            leg = fit_leg(market, "sell", wanted, sold_price / bought_price, sold_price, order_type, quote)
            if isinstance(leg, str):
                continue
            sells[sold] = amount_sold - leg.amount
            buys[bought] = value_bought - leg.value * (ONE - fee)
        else:  # buy the underweight asset with the overweight one, fee paid on top
            wanted = min(value_bought, amount_sold * sold_price / (ONE + fee)) / bought_price
            leg = fit_leg(market, "buy", wanted, bought_price / sold_price, bought_price, order_type, quote)
            if isinstance(leg, str):
                continue
            sells[sold] = amount_sold - leg.value * (ONE + fee) / sold_price
            buys[bought] = value_bought - leg.value
        legs.append(leg)
    return legs


def _fee_saving(
    market: MarketRule, sold: str, bought: str, index: MarketIndex, quote: str, order_type: OrderType
) -> Decimal | None:
    """Fee rate saved by the direct pair over the quote route; None when it saves nothing."""
    via_sold, via_bought = index.get(sold, quote), index.get(bought, quote)
    if via_sold is None or via_bought is None:
        return _ONLY_ROUTE
    saving = fee_rate(via_sold, order_type) + fee_rate(via_bought, order_type) - fee_rate(market, order_type)
    return saving if saving > 0 else None
