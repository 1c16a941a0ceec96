"""Order limits and funding: keep the orders that matter most, and never spend money not there.

Buys through the quote are paid from the spendable quote plus what the sells bring in after their
fees, with each buy's own fee on top. When that falls short, the planned sells first sell deeper,
whole steps at a time, where their asset still lies above its target; what remains short scales every
buy down by the same factor, buys that become too small are dropped, and the change is handed back
step by step.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from contracts.v1.strategy import OrderType
from services.planner.legs import DEFAULT_STEP, Leg, Omission, fit_leg, money
from services.planner.valuation import ONE, ZERO


def limit_orders(
    legs: list[Leg], max_orders: int | None, spendable: Decimal, quote: str
) -> tuple[list[Leg], list[Leg]]:
    """At most ``max_orders`` legs, chosen greedily by the drift each removes.

    A buy removes only as much drift as the chosen sells and the cash on hand can pay for; a
    direct pair removes drift on both of its assets.
    """
    if max_orders is None or len(legs) <= max_orders:
        return legs, []
    remaining = list(legs)
    kept: list[Leg] = []
    funds = spendable
    while len(kept) < max_orders and remaining:
        best = max(remaining, key=lambda leg: _drift_removed(leg, funds, quote))
        if _drift_removed(best, funds, quote) <= 0:
            break
        kept.append(best)
        remaining.remove(best)
        if best.sold == quote:
            funds -= best.value * (ONE + best.fee_rate)
        elif best.bought == quote:
            funds += best.value * (ONE - best.fee_rate)
    return kept, remaining


def _drift_removed(leg: Leg, funds: Decimal, quote: str) -> Decimal:
    if leg.sold == quote:
        return min(leg.value, max(funds, ZERO) / (ONE + leg.fee_rate))
    if leg.bought == quote:
        return leg.value
    return 2 * leg.value


def fund_buys(
    legs: list[Leg],
    spendable: Decimal,
    quote: str,
    order_type: OrderType,
    sell_rooms: dict[str, Decimal],
) -> tuple[list[Leg], list[Omission]]:
    """The legs with quote-funded buys paid for, and what scaling them down left out.

    ``sell_rooms`` caps, per asset, the value its sell may still add (down to its target, within its
    free balance). A shortfall of a fraction of a step would otherwise cost a buy a whole step, more
    than the margin inside its band that absorbs truncation, and leave it outside the band.
    """
    buys = [leg for leg in legs if leg.sold == quote]
    if not buys:
        return legs, []
    available = spendable + sum((leg.value * (ONE - leg.fee_rate) for leg in legs if leg.bought == quote), ZERO)
    cost = sum((_cost(leg) for leg in buys), ZERO)
    if cost > available and sell_rooms:
        available += sell_deeper(legs, cost - available, sell_rooms, quote)
    if cost <= available:
        return legs, []

    left_out: list[Omission] = []
    active = buys
    while True:
        wanted_cost = sum((leg.wanted_amount * leg.base_price * (ONE + leg.fee_rate) for leg in active), ZERO)
        scale = min(available / wanted_cost, ONE) if wanted_cost > 0 else ZERO
        fitted: list[Leg] = []
        dropped: list[tuple[Leg, str]] = []
        for leg in active:
            scaled = fit_leg(leg.market, "buy", leg.wanted_amount * scale, leg.price, leg.base_price, order_type, quote)
            if isinstance(scaled, str):
                dropped.append((leg, scaled))
            else:
                scaled.wanted_amount = leg.wanted_amount
                fitted.append(scaled)
        for leg, reason in dropped:
            left_out.append(
                Omission(
                    asset=leg.bought,
                    side="buy",
                    value=leg.wanted_amount * leg.base_price,
                    reason=f"not enough {quote} for every buy, scaled down: {reason}",
                )
            )
        if not dropped or not fitted:
            break
        active = fitted

    wanted_values = {leg.bought: leg.wanted_amount * leg.base_price for leg in fitted}
    spend_change(fitted, available - sum((_cost(leg) for leg in fitted), ZERO), wanted_values, quote)
    for leg in fitted:
        # Report a shortfall only when it could have been an order of its own; smaller remainders
        # (the sells' truncation to their steps) are not drift that any plan could fix.
        short = leg.wanted_amount - leg.amount
        if short > 0 and not isinstance(
            fit_leg(leg.market, "buy", short, leg.price, leg.base_price, order_type, quote), str
        ):
            left_out.append(
                Omission(
                    asset=leg.bought,
                    side="buy",
                    value=short * leg.base_price,
                    reason=(
                        f"{leg.bought} buy scaled down from {money(leg.wanted_amount * leg.base_price)} to "
                        f"{money(leg.value)} {quote}: the {quote} on hand and the sells' proceeds "
                        f"do not cover every buy"
                    ),
                )
            )
    return [leg for leg in legs if leg.sold != quote] + fitted, left_out


def _cost(leg: Leg) -> Decimal:
    return leg.value * (ONE + leg.fee_rate)


def spend_change(legs: list[Leg], change: Decimal, rooms: dict[str, Decimal], quote: str) -> None:
    """Spend cash that truncation to the amount steps left idle on the buys already planned.

    ``rooms`` caps, per asset, the value a buy may still add (up to its target), so the change
    never pushes an asset past its goal; whole steps only, largest room first.
    """
    buys = [leg for leg in legs if leg.sold == quote]
    for leg in sorted(buys, key=lambda leg: -(rooms.get(leg.bought, ZERO) - leg.value)):
        if change <= 0:
            return
        room = rooms.get(leg.bought, ZERO) - leg.value
        if room <= 0:
            continue
        step = leg.market.amount_step or DEFAULT_STEP
        unit_cost = leg.base_price * (ONE + leg.fee_rate)
        extra = min(room // (step * leg.base_price), change // (step * unit_cost)) * step
        if extra > 0:
            leg.amount += extra
            leg.value = leg.amount * leg.base_price
            change -= extra * unit_cost


def sell_deeper(legs: list[Leg], shortfall: Decimal, rooms: dict[str, Decimal], quote: str) -> Decimal:
    """Add whole steps to the sells into the quote until their proceeds cover ``shortfall``.

    Each sell grows only within its asset's room, largest room first; returns the proceeds added
    (after fees), which fall short of ``shortfall`` when the rooms do.
    """
    sells = [leg for leg in legs if leg.bought == quote and leg.side == "sell"]
    added = ZERO
    for leg in sorted(sells, key=lambda leg: -rooms.get(leg.sold, ZERO)):
        if added >= shortfall:
            break
        step = leg.market.amount_step or DEFAULT_STEP
        step_value = step * leg.base_price
        net = step_value * (ONE - leg.fee_rate)
        if net <= 0:
            continue
        fits = rooms.get(leg.sold, ZERO) // step_value
        needed = ((shortfall - added) / net).to_integral_value(rounding=ROUND_CEILING)
        steps = min(fits, needed)
        if steps > 0:
            leg.amount += steps * step
            leg.value = leg.amount * leg.base_price
            added += steps * net
    return added
