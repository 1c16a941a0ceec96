"""Valuation: what the managed part of a portfolio is worth, per asset, and each asset's band.

The managed value excludes assets the portfolio leaves alone and the cash reserve, so target
weights apply to what the planner may actually move. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from contracts.v1.strategy import Holding, Strategy

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)


class Balance(Protocol):
    """What the valuation reads of a holding: a reported Holding, or a balance the planner simulates."""

    @property
    def asset(self) -> str: ...

    @property
    def free(self) -> Decimal: ...

    @property
    def total(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class Position:
    asset: str
    price: Decimal  # in the portfolio's quote currency
    total: Decimal  # amount held, including what open orders lock
    free: Decimal  # amount that may be sold (for the quote: spendable, net of the reserve)
    value: Decimal  # total * price; for the quote, net of the cash reserve
    target: Decimal  # target weight as a fraction (0..1) of the managed value
    in_targets: bool  # False: held but absent from the targets, to be sold to zero
    band: Decimal  # allowed deviation from the target value, in the quote currency


@dataclass(frozen=True, slots=True)
class Valuation:
    positions: dict[str, Position]  # every managed asset, the quote currency included
    managed_value: Decimal
    unpriced: tuple[Balance, ...]  # held outside the targets without a price: left alone
    problem: str | None = None  # why no plan can be made at all


def value_portfolio(strategy: Strategy, holdings: Sequence[Balance], prices: Mapping[str, Decimal]) -> Valuation:
    quote = strategy.quote_currency
    weight_sum = sum(strategy.target_weights.values(), ZERO)
    if weight_sum <= 0:
        return Valuation({}, ZERO, (), "the target weights sum to 0")
    held: dict[str, Balance] = {}
    for reported in holdings:
        first = held.get(reported.asset)
        if first is not None:  # tolerate a split report of one asset
            reported = Holding(
                asset=reported.asset, free=first.free + reported.free, total=first.total + reported.total
            )
        held[reported.asset] = reported
    left_alone = set(strategy.leave_alone) - strategy.target_weights.keys()
    assets = list(strategy.target_weights)
    assets += [a for a, h in held.items() if h.total > 0 and a not in left_alone and a not in assets]
    if quote not in assets:
        assets.append(quote)

    raw: list[tuple[str, Decimal, Decimal, Decimal]] = []  # asset, price, total, free
    unpriced: list[Balance] = []
    for asset in assets:
        holding = held.get(asset)
        total = holding.total if holding else ZERO
        free = min(holding.free, total) if holding else ZERO
        price = ONE if asset == quote else prices.get(asset)
        if price is None or price <= 0:
            if asset in strategy.target_weights:
                return Valuation({}, ZERO, (), f"no price for {asset} in {quote}")
            assert holding is not None
            unpriced.append(holding)
            continue
        raw.append((asset, price, max(total, ZERO), max(free, ZERO)))

    reserve = strategy.cash_reserve
    managed = sum((price * total for _, price, total, _ in raw), ZERO) - reserve
    if managed <= 0:
        return Valuation(
            {},
            ZERO,
            tuple(unpriced),
            f"nothing to manage: the portfolio is not worth more than the cash reserve of {reserve:.2f} {quote}",
        )
    positions: dict[str, Position] = {}
    for asset, price, total, free in raw:
        weight = strategy.target_weights.get(asset)
        in_targets = weight is not None or asset == quote
        target = (weight or ZERO) / weight_sum
        value = total * price
        if asset == quote:
            value -= reserve
            free = max(free - reserve, ZERO)
        band = band_of(strategy, target, managed) if in_targets else ZERO
        positions[asset] = Position(asset, price, total, free, value, target, in_targets, band)
    return Valuation(positions, managed, tuple(unpriced))


def band_of(strategy: Strategy, target: Decimal, managed_value: Decimal) -> Decimal:
    """Half-width of the no-trade band around the target value, in the quote currency."""
    if strategy.threshold_kind == "absolute":
        return strategy.threshold / HUNDRED * managed_value
    if strategy.threshold_kind == "relative":
        return strategy.threshold / HUNDRED * target * managed_value
    return strategy.threshold


def describe_band(strategy: Strategy) -> str:
    threshold = format(strategy.threshold.normalize(), "f")
    if strategy.threshold_kind == "absolute":
        return f"±{threshold} pp"
    if strategy.threshold_kind == "relative":
        return f"±{threshold} % of their target weight"
    return f"{threshold} {strategy.quote_currency} of their target value"
