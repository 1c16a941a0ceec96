"""Settling: what the balances are once a plan's legs fill, and how a follow-up pass joins the plan.

A plan must leave the portfolio where the next plan sees nothing worth doing. The planner checks
that by planning again on the balances its own legs produce, and folds the follow-up legs into the
plan when they only extend it: more of an order it already places, or a new order that neither
buys what the plan sells nor sells what it buys. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    the other way (buy less rather than buy and sell back; no order at all when they cancel out), as
    long as the net order still clears the market's minimums. A leg on another market must neither
    sell what the plan buys nor buy what it sells: the executor places every sell before any buy,
    so one plan cannot chain them.
    """
    merged = {leg.market.symbol: leg for leg in legs}
    for leg in follow_up:
        earlier = merged.get(leg.market.symbol)
        if earlier is None:
            if _crosses(merged.values(), leg, quote):
                return leg
            merged[leg.market.symbol] = leg
            continue
        if earlier.side == leg.side:
            kept, amount = earlier, earlier.amount + leg.amount
        else:
            kept, amount = (
                (earlier, earlier.amount - leg.amount)
                if earlier.amount > leg.amount
                else (leg, leg.amount - earlier.amount)
            )
        if amount == 0:
            del merged[leg.market.symbol]
            continue
        netted = fit_leg(kept.market, kept.side, amount, kept.price, kept.base_price, order_type, quote)
        others = [other for symbol, other in merged.items() if symbol != leg.market.symbol]
        if isinstance(netted, str) or netted.amount != amount or _crosses(others, netted, quote):
            return leg
        netted.wanted_amount = kept.wanted_amount
        merged[leg.market.symbol] = netted
    if max_orders is not None and len(merged) > max_orders:
        planned = {leg.market.symbol for leg in legs}
        return next(leg for leg in follow_up if leg.market.symbol not in planned)
    return list(merged.values())


def _crosses(legs: Iterable[Leg], leg: Leg, quote: str) -> bool:
    """Whether ``leg`` sells an asset the legs buy or buys one they sell (the quote aside)."""
    return any(
        (other.bought == leg.sold and leg.sold != quote) or (other.sold == leg.bought and leg.bought != quote)
        for other in legs
    )
