"""Pure rules of the paper exchange: order validation, fills, fees and the price walk.

No I/O here: the store applies what these functions decide.
Fees are charged in the market's quote currency: a buy pays ``cost + fee``, a sell receives
``cost - fee``. Market orders pay the taker fee; resting limit orders fill at their limit price and
pay the maker fee.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from services.common.exchanges.port import LegFailed, Market, OrderRequest, Side

# Enough digits that amount * price * fee is exact for any realistic order.
_PRECISION = 60


class PaperOrderRejected(LegFailed):
    """The paper exchange refused an order; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PaperMarket:
    """A market as the paper exchange stores it: the port's Market plus its last price."""

    market: Market
    price: Decimal

    @property
    def symbol(self) -> str:
        return self.market.symbol


@dataclass(frozen=True)
class OrderPlan:
    """What one accepted order does to balances, and the order row to record.

    ``debit`` leaves ``free`` of ``debit_asset``; ``lock`` of it moves to ``used`` (a resting limit
    order); ``credit`` is added to ``free`` of ``credit_asset`` (an immediate fill).
    """

    debit_asset: str
    debit: Decimal
    lock: Decimal
    credit_asset: str
    credit: Decimal
    status: str  # "closed" (filled now) or "open" (resting)
    filled: Decimal
    average_price: Decimal | None
    cost: Decimal
    fee: Decimal
    fee_currency: str | None


def _reject(reason: str, message: str) -> PaperOrderRejected:
    return PaperOrderRejected(reason, message)


def _on_step(value: Decimal, step: Decimal | None) -> bool:
    return step is None or value % step == 0


def validate_order(market: PaperMarket | None, request: OrderRequest) -> None:
    """Raise PaperOrderRejected naming the rule an order breaks; return if it may be placed."""
    symbol = request.symbol
    if market is None:
        raise _reject("unknown_symbol", f"unknown symbol {symbol!r} on the paper exchange")
    rules = market.market
    if not rules.active:
        raise _reject("market_inactive", f"market {symbol} is not active")
    amount = request.amount
    if not amount.is_finite() or amount <= 0:
        raise _reject("invalid_amount", f"amount {amount:f} must be positive for {symbol}")
    if request.order_type == "limit":
        price = request.price
        if price is None or not price.is_finite() or price <= 0:
            raise _reject("invalid_price", f"a limit order on {symbol} needs a positive price")
        if not _on_step(price, rules.price_step):
            raise _reject(
                "price_precision",
                f"price {price:f} is not a multiple of the price step {rules.price_step:f} for {symbol}",
            )
    elif request.order_type != "market":
        raise _reject("invalid_order", f"unknown order type {request.order_type!r}")
    if not _on_step(amount, rules.amount_step):
        raise _reject(
            "amount_precision",
            f"amount {amount:f} is not a multiple of the amount step {rules.amount_step:f} for {symbol}",
        )
    if rules.min_amount is not None and amount < rules.min_amount:
        raise _reject(
            "below_min_amount",
            f"amount {amount:f} is below the minimum amount {rules.min_amount:f} for {symbol}",
        )
    reference = request.price if request.order_type == "limit" else market.price
    assert reference is not None  # checked above for limit orders
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        cost = amount * reference
    if rules.min_cost is not None and cost < rules.min_cost:
        raise _reject(
            "below_min_cost",
            f"cost {cost:f} {rules.quote} is below the minimum cost {rules.min_cost:f} for {symbol}",
        )


def crosses(side: Side, limit_price: Decimal, market_price: Decimal) -> bool:
    """A buy limit fills when the market is at or below it; a sell limit at or above."""
    return market_price <= limit_price if side == "buy" else market_price >= limit_price


def _fill_plan(rules: Market, side: Side, amount: Decimal, price: Decimal, fee_rate: Decimal) -> OrderPlan:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        cost = amount * price
        fee = cost * fee_rate
        if side == "buy":
            return OrderPlan(rules.quote, cost + fee, Decimal(0), rules.base, amount, "closed",
                             amount, price, cost, fee, rules.quote)
        return OrderPlan(rules.base, amount, Decimal(0), rules.quote, cost - fee, "closed",
                         amount, price, cost, fee, rules.quote)


def plan_order(market: PaperMarket, request: OrderRequest) -> OrderPlan:
    """The effect of a validated order at the market's current price.

    A market order, or a limit order that already crosses, fills now at the current price (taker).
    Otherwise the limit order rests and locks what its fill at the limit price will need.
    """
    rules = market.market
    if request.order_type == "market" or (
        request.price is not None and crosses(request.side, request.price, market.price)
    ):
        return _fill_plan(rules, request.side, request.amount, market.price, rules.taker_fee)
    assert request.price is not None
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if request.side == "buy":
            cost = request.amount * request.price
            need, asset = cost + cost * rules.maker_fee, rules.quote
        else:
            need, asset = request.amount, rules.base
    return OrderPlan(asset, need, need, asset, Decimal(0), "open", Decimal(0), None,
                     Decimal(0), Decimal(0), None)


@dataclass(frozen=True)
class RestingOrder:
    """An open limit order as matching needs it."""

    order_id: int
    account: str
    side: Side
    amount: Decimal
    price: Decimal
    reserved_asset: str
    reserved: Decimal


@dataclass(frozen=True)
class RestingFill:
    """A resting order filled at its limit price: order fields and the balance moves."""

    order_id: int
    cost: Decimal
    fee: Decimal
    fee_currency: str
    # (account, asset, free delta, used delta)
    balance_moves: tuple[tuple[str, str, Decimal, Decimal], ...]


def fill_resting(order: RestingOrder, rules: Market) -> RestingFill:
    plan = _fill_plan(rules, order.side, order.amount, order.price, rules.maker_fee)
    # The lock was sized for exactly this fill; anything left over (never, for buys) goes back.
    leftover = order.reserved - plan.debit
    moves = (
        (order.account, order.reserved_asset, leftover, -order.reserved),
        (order.account, plan.credit_asset, plan.credit, Decimal(0)),
    )
    return RestingFill(order.order_id, plan.cost, plan.fee, rules.quote, moves)


def merge_balance_moves(
    moves: Sequence[tuple[str, str, Decimal, Decimal]],
) -> list[tuple[str, str, Decimal, Decimal]]:
    """Sum moves per (account, asset), sorted so that concurrent writers lock rows in one order."""
    totals: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for account, asset, free, used in moves:
        old_free, old_used = totals.get((account, asset), (Decimal(0), Decimal(0)))
        totals[(account, asset)] = (old_free + free, old_used + used)
    return [(a, s, f, u) for (a, s), (f, u) in sorted(totals.items())]


# Assets whose value the walk holds fixed against the USD (quote currencies and stablecoins).
PEGGED_ASSETS = frozenset({"USD", "USDT", "USDC", "DAI", "BUSD"})
# Fiat moves far less than crypto.
_VOLATILITY_SCALE = {"EUR": 0.1, "GBP": 0.1}


def walk_factors(assets: Sequence[str], rng: random.Random, volatility: float) -> dict[str, Decimal]:
    """One multiplicative move per asset, drawn in sorted asset order so a seed replays exactly."""
    factors: dict[str, Decimal] = {}
    for asset in sorted(set(assets)):
        if asset in PEGGED_ASSETS:
            factors[asset] = Decimal(1)
            continue
        move = rng.gauss(0.0, volatility * _VOLATILITY_SCALE.get(asset, 1.0))
        move = max(-0.5, min(0.5, move))  # keep prices positive whatever the volatility
        factors[asset] = Decimal(1) + Decimal(f"{move:.12f}")
    return factors


def walk_prices(
    markets: Sequence[PaperMarket], rng: random.Random, volatility: float
) -> dict[str, Decimal]:
    """New price per symbol. Each asset moves once, so cross pairs stay consistent with USD pairs."""
    assets = [a for m in markets for a in (m.market.base, m.market.quote)]
    factors = walk_factors(assets, rng, volatility)
    prices: dict[str, Decimal] = {}
    for paper_market in markets:
        rules = paper_market.market
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            moved = paper_market.price * factors[rules.base] / factors[rules.quote]
        prices[rules.symbol] = round_to_step(moved, rules.price_step)
    return prices


def round_to_step(value: Decimal, step: Decimal | None) -> Decimal:
    """Nearest multiple of ``step`` (never zero); 12 significant digits when there is no step."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if step is None:
            return value.quantize(Decimal(1).scaleb(value.adjusted() - 11), ROUND_HALF_EVEN)
        rounded = (value / step).to_integral_value(ROUND_HALF_EVEN) * step
        return max(rounded, step).quantize(step)
