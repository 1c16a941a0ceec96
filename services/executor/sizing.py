"""Pure order arithmetic for the executor: sizing buys to the quote actually on hand, simulated
fills for dry runs, and the value of fills in the portfolio's quote currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from contracts.v1 import Fill, PlannedOrder
from services.common.exchanges.port import Market, OrderResult

ZERO = Decimal(0)
# Keep a little of the quote unspent: prices move between planning and filling.
FUNDING_MARGIN = Decimal("0.005")
MIN_MARGIN = Decimal("1.01")


def floor_to_step(amount: Decimal, step: Decimal | None) -> Decimal:
    if not step or step <= 0:
        return amount
    return (amount / step).to_integral_value(rounding=ROUND_DOWN) * step


@dataclass(frozen=True)
class SizedLeg:
    order: PlannedOrder
    amount: Decimal
    dropped: str | None = None  # why the leg cannot be placed after sizing


def buy_cost(order: PlannedOrder, fee_rate: Decimal, amount: Decimal | None = None) -> Decimal:
    return (order.amount if amount is None else amount) * order.price * (1 + fee_rate)


def size_buys(
    buys: Sequence[PlannedOrder],
    available: Decimal,
    markets: Mapping[str, Market],
) -> list[SizedLeg]:
    """Scale quote-funded buys down together when the quote on hand cannot pay for them all.

    ``available`` is the free balance of the buys' quote currency after the sells. Buys keep
    their planned size when it is affordable; otherwise each is scaled by the same factor,
    truncated to its market's step, and dropped (with the reason) below the market's minimums.
    """
    needed = ZERO
    for order in buys:
        market = markets.get(order.symbol)
        needed += buy_cost(order, market.taker_fee if market else ZERO)
    budget = available * (1 - FUNDING_MARGIN)
    if needed <= budget or needed == 0:
        return [SizedLeg(order, order.amount) for order in buys]
    factor = max(budget, ZERO) / needed
    sized: list[SizedLeg] = []
    for order in buys:
        market = markets.get(order.symbol)
        amount = floor_to_step(order.amount * factor, market.amount_step if market else None)
        reason = below_minimum(order, amount, market)
        sized.append(SizedLeg(order, amount, reason))
    return sized


def below_minimum(order: PlannedOrder, amount: Decimal, market: Market | None) -> str | None:
    if amount <= 0:
        return f"{order.base} {order.side} scaled to nothing: not enough {order.quote} after the sells"
    if market is None:
        return None
    if market.min_amount and amount < market.min_amount * MIN_MARGIN:
        return (
            f"{order.base} {order.side} of {amount} is below the exchange minimum amount of "
            f"{market.min_amount}{_margin(amount, market.min_amount)} after sizing to the {order.quote} on hand"
        )
    cost = amount * order.price
    if market.min_cost and cost < market.min_cost * MIN_MARGIN:
        return (
            f"{order.base} {order.side} of {cost:.2f} {order.quote} is below the exchange minimum of "
            f"{market.min_cost} {order.quote}{_margin(cost, market.min_cost)} after sizing to the {order.quote} on hand"
        )
    return None


def _margin(size: Decimal, minimum: Decimal) -> str:
    """Why a size at or just above the minimum is dropped: the price may move before the fill."""
    kept = ((MIN_MARGIN - 1) * 100).normalize()
    return f" with the {kept} % kept above it for price moves" if size >= minimum else ""


def simulated_result(order: PlannedOrder, amount: Decimal, client_order_id: str) -> OrderResult:
    """A dry-run fill: at the planned price, with the planned fee rate."""
    cost = amount * order.price
    fee_rate = order.fee / order.value if order.value else ZERO
    return OrderResult(
        client_order_id=client_order_id,
        exchange_order_id=None,
        symbol=order.symbol,
        side=order.side,
        status="closed",
        amount=amount,
        filled=amount,
        average_price=order.price,
        cost=cost,
        fee=cost * fee_rate,
        fee_currency=order.quote,
    )


def to_quote(amount: Decimal, currency: str | None, prices: Mapping[str, Decimal]) -> Decimal:
    """An amount of ``currency`` in the portfolio's quote currency (0 when it has no price)."""
    if not amount or currency is None:
        return ZERO
    return amount * prices.get(currency, ZERO)


def fill_of(result: OrderResult, market_quote: str, prices: Mapping[str, Decimal]) -> Fill:
    """What the exchange reported for an order, its value in the portfolio's quote currency."""
    return Fill(
        exchange_order_id=result.exchange_order_id,
        status=result.status,
        filled=result.filled,
        average_price=result.average_price,
        cost=result.cost,
        fee=result.fee,
        fee_currency=result.fee_currency,
        fee_known=result.fee_known,
        value=to_quote(result.cost, market_quote, prices),
    )


def holdings_after(
    before: Mapping[str, Decimal], fills: Sequence[tuple[PlannedOrder, OrderResult]]
) -> dict[str, Decimal]:
    """Simulated balances after dry-run fills (fees charged in the fee currency)."""
    after = dict(before)
    for order, result in fills:
        sign = 1 if order.side == "buy" else -1
        after[order.base] = after.get(order.base, ZERO) + sign * result.filled
        after[order.quote] = after.get(order.quote, ZERO) - sign * result.cost
        if result.fee and result.fee_currency:
            after[result.fee_currency] = after.get(result.fee_currency, ZERO) - result.fee
    return after
