"""Settling: what the balances are once a plan's legs fill, and how a follow-up pass joins the plan.

A plan must leave the portfolio where the next plan sees nothing worth doing. The planner checks
that by planning again on the balances its own legs produce, and folds the follow-up legs into the
plan when they only extend it: more of an order it already places, or a new order that neither
buys what the plan sells nor sells what it buys. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

from contracts.v1.strategy import OrderType
from services.planner.legs import Leg, fit_leg
from services.planner.valuation import ONE, ZERO, Balance


class SimulatedBalance(NamedTuple):
    asset: str
    free: Decimal
    total: Decimal


def holdings_after(holdings: Sequence[Balance], legs: Sequence[Leg]) -> list[SimulatedBalance]:
    """The balances once every leg fills at its planned price, fees paid in what each order gives up:
    the planner's own model of a fill (the one its fee estimates and expected weights use)."""
    free: dict[str, Decimal] = {}
    total: dict[str, Decimal] = {}
    for holding in holdings:  # a split report of one asset is summed, as the valuation does
        free[holding.asset] = free.get(holding.asset, ZERO) + holding.free
        total[holding.asset] = total.get(holding.asset, ZERO) + holding.total
    for leg in legs:
        base, market_quote = leg.market.base, leg.market.quote
        cost = leg.amount * leg.price
        if leg.side == "sell":
            base_change, quote_change = -leg.amount, cost * (ONE - leg.fee_rate)
        else:
            base_change, quote_change = leg.amount, -cost * (ONE + leg.fee_rate)
        for asset, change in ((base, base_change), (market_quote, quote_change)):
            free[asset] = free.get(asset, ZERO) + change
            total[asset] = total.get(asset, ZERO) + change
    return [SimulatedBalance(a, free[a], total[a]) for a in total]


def merge_legs(
    legs: Sequence[Leg], follow_up: Sequence[Leg], quote: str, max_orders: int | None, order_type: OrderType
) -> list[Leg] | Leg:
    """The plan's legs with a follow-up pass's legs folded in, or the follow-up leg that does not fit.

    A follow-up leg on a market the plan trades adds to that order, or nets against it when it goes
    the other way (buy less rather than buy and sell back), as long as the net order still clears
    the market's minimums. A leg on another market must neither sell what the plan buys nor buy what
    it sells: the executor places every sell before any buy, so one plan cannot chain them.
    """
    merged = list(legs)
    by_symbol = {leg.market.symbol: number for number, leg in enumerate(merged)}
    for leg in follow_up:
        number = by_symbol.get(leg.market.symbol)
        if number is None:
            if _crosses(merged, leg, quote) or (max_orders is not None and len(merged) >= max_orders):
                return leg
            by_symbol[leg.market.symbol] = len(merged)
            merged.append(leg)
            continue
        earlier = merged[number]
        if earlier.side == leg.side:
            amount = earlier.amount + leg.amount
        elif leg.amount < earlier.amount:
            amount = earlier.amount - leg.amount
        else:  # netting would turn the order around: that is selling and buying back
            return leg
        netted = fit_leg(earlier.market, earlier.side, amount, earlier.price, earlier.base_price, order_type, quote)
        if isinstance(netted, str) or netted.amount != amount:
            return leg
        netted.wanted_amount = earlier.wanted_amount
        merged[number] = netted
    return merged


def _crosses(legs: Sequence[Leg], leg: Leg, quote: str) -> bool:
    """Whether ``leg`` sells an asset the legs buy or buys one they sell (the quote aside)."""
    return any(
        (other.bought == leg.sold and leg.sold != quote) or (other.sold == leg.bought and leg.bought != quote)
        for other in legs
    )
