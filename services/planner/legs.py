"""Legs: one order on one market, fitted to that market's rules, or the reason it cannot be placed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from contracts.v1.strategy import MarketRule, OrderType, Side

# Orders must clear the exchange minimums by this factor, so that a small price move between
# planning and execution does not turn an accepted order into a rejected one.
MIN_SAFETY = Decimal("1.01")
# Amounts on markets that state no step are cut to 8 decimals, the finest precision exchanges take.
DEFAULT_STEP = Decimal("1e-8")


class MarketIndex:
    """The exchange's markets, indexed once per plan by (base, quote) and by asset."""

    __slots__ = ("_by_pair", "_direct")

    def __init__(self, markets: Sequence[MarketRule], quote: str) -> None:
        self._by_pair: dict[tuple[str, str], MarketRule] = {}
        self._direct: dict[str, list[MarketRule]] = {}
        for market in markets:
            self._by_pair[(market.base, market.quote)] = market
            if quote not in (market.base, market.quote):
                self._direct.setdefault(market.base, []).append(market)
                self._direct.setdefault(market.quote, []).append(market)

    def get(self, base: str, quote: str) -> MarketRule | None:
        return self._by_pair.get((base, quote))

    def between(self, asset: str) -> list[MarketRule]:
        """Markets pairing ``asset`` with another asset that is not the portfolio's quote."""
        return self._direct.get(asset, [])


class Omission(NamedTuple):
    """A leg left out and why; a cheap stand-in for LeftOutLeg until the plan is built."""

    asset: str
    side: Side
    value: Decimal
    reason: str


def fee_rate(market: MarketRule, order_type: OrderType) -> Decimal:
    return market.maker_fee if order_type == "limit" else market.taker_fee


@dataclass(slots=True)
class Leg:
    market: MarketRule
    side: Side  # on the market: sell gives up its base, buy receives it
    amount: Decimal  # base amount, on the market's step
    price: Decimal  # the market's quote per base
    value: Decimal  # in the portfolio's quote currency
    fee_rate: Decimal
    sold: str  # the asset given up
    bought: str  # the asset received
    wanted_amount: Decimal  # base amount asked for before rules and scaling
    base_price: Decimal  # the base's price in the portfolio's quote currency

    @property
    def fee(self) -> Decimal:
        return self.value * self.fee_rate

    @property
    def asset(self) -> str:
        """The asset this leg is about (the non-quote side; the base of a direct pair)."""
        return self.market.base


def money(value: Decimal) -> str:
    """Two decimals, or up to eight significant places for values below 1 (a BTC-quoted portfolio)."""
    if abs(value) >= 1:
        return f"{value:.2f}"
    return quantity(value.quantize(_EIGHT_PLACES))


_EIGHT_PLACES = Decimal("1e-8")


def quantity(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def fit_leg(
    market: MarketRule,
    side: Side,
    wanted_amount: Decimal,
    price: Decimal,
    base_price: Decimal,
    order_type: OrderType,
    portfolio_quote: str,
) -> Leg | str:
    """A leg on ``market`` for at most ``wanted_amount`` of its base, or why it cannot be placed.

    ``price`` is the market's quote per base, ``base_price`` the base's price in the portfolio's
    quote currency.
    """
    step = market.amount_step or DEFAULT_STEP
    amount = (wanted_amount // step) * step
    min_amount, min_cost = market.min_amount, market.min_cost
    # The common case first, with no strings built: the leg clears every rule.
    if (
        amount > 0
        and (min_amount is None or amount >= min_amount * MIN_SAFETY)
        and (min_cost is None or amount * price >= min_cost * MIN_SAFETY)
    ):
        sold, bought = (market.base, market.quote) if side == "sell" else (market.quote, market.base)
        return Leg(
            market,
            side,
            amount,
            price,
            amount * base_price,
            fee_rate(market, order_type),
            sold,
            bought,
            wanted_amount,
            base_price,
        )
    return _why_not(market, side, wanted_amount, amount, price, base_price, portfolio_quote)


def _why_not(
    market: MarketRule,
    side: Side,
    wanted_amount: Decimal,
    amount: Decimal,
    price: Decimal,
    base_price: Decimal,
    portfolio_quote: str,
) -> str:
    base = market.base
    sold, bought = (base, market.quote) if side == "sell" else (market.quote, base)
    what = f"{base} {side}" if portfolio_quote == market.quote else f"{sold}→{bought} ({market.symbol} {side})"
    wanted = f"{what} of {money(wanted_amount * base_price)} {portfolio_quote}"
    if amount <= 0:
        return f"{wanted} is less than one amount step of {quantity(market.amount_step or DEFAULT_STEP)} {base}"
    if market.min_amount is not None and amount < market.min_amount * MIN_SAFETY:
        margin = "" if amount < market.min_amount else " plus a 1 % safety margin"
        return (
            f"{wanted} ({quantity(amount)} {base}) is below the exchange minimum of "
            f"{quantity(market.min_amount)} {base}{margin}"
        )
    assert market.min_cost is not None
    margin = "" if amount * price < market.min_cost else " plus a 1 % safety margin"
    return f"{wanted} is below the exchange minimum of {quantity(market.min_cost)} {market.quote}{margin}"
