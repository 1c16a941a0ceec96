"""The planner's pure core: holdings, prices, targets and market rules in; a decision and orders out.

No I/O. The steps, each in its own module:
valuation (what is managed, bands) -> targets (target or band edge, net of the fees the trades
cost) -> legs (only the difference, on the market's step and above its minimums) -> routing
(direct pairs when cheaper) -> funding (max orders, buys paid by cash on hand and sells' proceeds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from contracts.v1.strategy import (
    AssetDrift,
    Holding,
    LeftOutLeg,
    MarketRule,
    PlannedOrder,
    Side,
    Strategy,
)
from services.planner.funding import fund_buys, limit_orders, spend_change
from services.planner.legs import Leg, MarketIndex, fit_leg, money, quantity
from services.planner.routing import route_direct
from services.planner.targets import desired_values
from services.planner.valuation import HUNDRED, ONE, ZERO, Position, Valuation, describe_band, value_portfolio

Decision = Literal["rebalance", "skip"]

# Fee estimation converges geometrically (ratio ~ the fee rate); two or three rounds suffice.
_FEE_ROUNDS = 4
_WEIGHT_PLACES = Decimal("0.0001")
_EDGE_TOLERANCE = Decimal("1e-6")
# Differences this small, relative to the managed value, are rounding, not trades.
_NOISE = Decimal("1e-9")
_VALUE_PLACES = Decimal("1e-8")


@dataclass(frozen=True)
class Plan:
    decision: Decision
    reason: str
    portfolio_value: Decimal  # the managed value: without left-alone assets and the cash reserve
    drift: list[AssetDrift]
    orders: list[PlannedOrder] = field(default_factory=list)
    left_out: list[LeftOutLeg] = field(default_factory=list)
    expected_weights: dict[str, Decimal] = field(default_factory=dict)
    estimated_fees: Decimal = ZERO
    turnover: Decimal = ZERO


@dataclass(slots=True)
class _Trades:
    legs: list[Leg]
    left_out: list[LeftOutLeg]
    fees: Decimal
    stuck: frozenset[str]  # assets no market rule lets us trade at all towards their goal


def plan_rebalance(
    strategy: Strategy,
    holdings: Sequence[Holding],
    prices: Mapping[str, Decimal],
    markets: Sequence[MarketRule],
    *,
    scheduled: bool = True,
) -> Plan:
    """Decide whether to rebalance and with which orders. See the module docstring for the steps."""
    quote = strategy.quote_currency
    valuation = value_portfolio(strategy, holdings, prices)
    unpriced = [_unpriced(h, quote) for h in valuation.unpriced]
    if valuation.problem is not None:
        return Plan("skip", valuation.problem, valuation.managed_value, [], left_out=unpriced)
    positions = valuation.positions
    managed = valuation.managed_value
    drift = _drift_rows(valuation)
    current_weights = {row.asset: row.current_weight for row in drift}
    deviations = {a: p.value - p.target * managed for a, p in positions.items()}
    # A deviation within rounding of the band's edge (fee estimates, Decimal precision) is not drift.
    tolerance = managed * _EDGE_TOLERANCE
    out_of_band = [a for a, p in positions.items() if abs(deviations[a]) > p.band + tolerance]
    must_trigger = scheduled and not strategy.always_rebalance
    if must_trigger and not out_of_band:
        return Plan(
            "skip",
            f"all assets within {describe_band(strategy)}",
            managed,
            drift,
            left_out=unpriced,
            expected_weights=current_weights,
        )

    trades = _plan_trades(strategy, positions, managed, MarketIndex(markets, quote))
    left_out = unpriced + trades.left_out
    fixed = _fixed_assets(trades.legs, quote, out_of_band, deviations)
    if not trades.legs:
        why = "; ".join(leg.reason for leg in trades.left_out[:3]) or "every asset is on target"
        return Plan(
            "skip",
            f"nothing tradable: {why}",
            managed,
            drift,
            left_out=left_out,
            expected_weights=current_weights,
        )
    if must_trigger and not fixed:
        stuck = ", ".join(_describe_drift(strategy, positions[a], deviations[a], managed) for a in out_of_band)
        return Plan(
            "skip",
            f"no out-of-band asset can be traded ({stuck}); see the left-out legs",
            managed,
            drift,
            left_out=left_out,
            expected_weights=current_weights,
        )

    orders = _orders(trades.legs, quote, strategy)
    if fixed:
        worst = max(fixed, key=lambda a: abs(deviations[a]) - positions[a].band)
        reason = _describe_drift(strategy, positions[worst], deviations[worst], managed)
    else:
        reason = "always rebalance when due" if scheduled else "manual run"
    return Plan(
        "rebalance",
        reason,
        managed,
        drift,
        orders,
        left_out,
        _expected_weights(trades.legs, positions, quote),
        trades.fees,
        sum((leg.value for leg in trades.legs), ZERO),
    )


def _plan_trades(strategy: Strategy, positions: dict[str, Position], managed: Decimal, index: MarketIndex) -> _Trades:
    """Trades that land on the mode's goal after paying their own fees (a fixed point in the fees)."""
    fees = ZERO
    frozen: frozenset[str] = frozenset()
    why_frozen: list[LeftOutLeg] = []
    trades = _Trades([], [], ZERO, frozenset())
    for _ in range(_FEE_ROUNDS + len(positions)):
        desired = desired_values(
            strategy.mode, strategy.threshold_kind, positions, strategy.quote_currency, managed - fees, frozen
        )
        trades = _trades_towards(desired, strategy, positions, index, managed - fees)
        if not trades.stuck <= frozen:
            why_frozen += [leg for leg in trades.left_out if leg.asset in trades.stuck - frozen]
            frozen |= trades.stuck
            continue
        if abs(trades.fees - fees) <= managed * _NOISE:
            break
        fees = trades.fees
    trades.left_out = why_frozen + trades.left_out
    return trades


def _trades_towards(
    desired: dict[str, Decimal],
    strategy: Strategy,
    positions: dict[str, Position],
    index: MarketIndex,
    investable: Decimal,
) -> _Trades:
    """Legs from the current values to ``desired``, with the idle change spent."""
    quote, order_type = strategy.quote_currency, strategy.order_type
    noise = investable * _NOISE  # differences this small are rounding, not trades
    sells: dict[str, Decimal] = {}  # base amounts
    buys: dict[str, Decimal] = {}  # values in the quote
    left_out: list[LeftOutLeg] = []
    stuck: set[str] = set()
    for asset, goal in desired.items():
        pos = positions[asset]
        delta = goal - pos.value
        if delta < 0:
            wanted = pos.total if goal <= 0 else -delta / pos.price
            if wanted > pos.free:
                locked = wanted - pos.free
                left_out.append(
                    LeftOutLeg.model_construct(
                        asset=asset,
                        side="sell",
                        value=locked * pos.price,
                        reason=(
                            f"{asset} sell of {money(wanted * pos.price)} {quote} exceeds the free "
                            f"balance: {quantity(pos.total - pos.free)} {asset} is locked in open orders"
                        ),
                    )
                )
                wanted = pos.free
            if wanted > 0:
                sells[asset] = wanted
        elif delta > 0:
            buys[asset] = delta

    legs = route_direct(sells, buys, positions, index, quote, order_type, noise)
    sides: tuple[tuple[Side, dict[str, Decimal]], ...] = (("sell", sells), ("buy", buys))
    for side, wanted_by_asset in sides:
        for asset, wanted in wanted_by_asset.items():
            pos = positions[asset]
            if (wanted * pos.price if side == "sell" else wanted) <= noise:
                continue
            amount = wanted if side == "sell" else wanted / pos.price
            value = amount * pos.price
            market = index.get(asset, quote)
            if market is None:
                reason = f"{asset} {side} of {money(value)} {quote}: no {asset}/{quote} market"
                left_out.append(LeftOutLeg.model_construct(asset=asset, side=side, value=value, reason=reason))
                continue
            leg = fit_leg(market, side, amount, pos.price, pos.price, order_type, quote)
            if isinstance(leg, str):
                left_out.append(LeftOutLeg.model_construct(asset=asset, side=side, value=value, reason=leg))
                stuck.add(asset)
            else:
                legs.append(leg)

    spendable = positions[quote].free
    legs, dropped = limit_orders(legs, strategy.max_orders, spendable, quote)
    for leg in dropped:
        left_out.append(
            LeftOutLeg.model_construct(
                asset=leg.bought if leg.sold == quote else leg.sold,
                side="buy" if leg.sold == quote else "sell",
                value=leg.value,
                reason=f"{leg.market.symbol} {leg.side} of {money(leg.value)} {quote} left for a later run: "
                f"at most {strategy.max_orders} orders per rebalance",
            )
        )
    legs, unfunded = fund_buys(legs, spendable, quote, order_type)
    left_out += unfunded
    _spend_idle_change(legs, desired, positions, quote, investable)
    traded = {leg.sold for leg in legs} | {leg.bought for leg in legs}
    return _Trades(legs, left_out, sum((leg.fee for leg in legs), ZERO), frozenset(stuck - traded))


def _spend_idle_change(
    legs: list[Leg], desired: dict[str, Decimal], positions: dict[str, Position], quote: str, investable: Decimal
) -> None:
    """Cash left above the quote's goal by truncated amounts goes to the planned buys, up to target."""
    proceeds = sum((leg.value * (ONE - leg.fee_rate) for leg in legs if leg.bought == quote), ZERO)
    costs = sum((leg.value * (ONE + leg.fee_rate) for leg in legs if leg.sold == quote), ZERO)
    cash_goal = investable - sum(desired.values(), ZERO)
    change = min(positions[quote].value + proceeds - costs - cash_goal, positions[quote].free + proceeds - costs)
    if change > 0:
        rooms = {a: positions[a].target * investable - positions[a].value for a in desired}
        spend_change(legs, change, rooms, quote)


def _fixed_assets(legs: list[Leg], quote: str, out_of_band: list[str], deviations: dict[str, Decimal]) -> list[str]:
    """The out-of-band assets that the legs trade. Cash counts when legs spend a surplus or refill a gap."""
    moved = {leg.sold for leg in legs} | {leg.bought for leg in legs}
    fixed = [a for a in out_of_band if a != quote and a in moved]
    if quote in out_of_band:
        spent = any(leg.sold == quote for leg in legs)
        raised = any(leg.bought == quote for leg in legs)
        if (deviations[quote] > 0 and spent) or (deviations[quote] < 0 and raised):
            fixed.append(quote)
    return fixed


def _orders(legs: list[Leg], quote: str, strategy: Strategy) -> list[PlannedOrder]:
    """Sells first (they fund the buys), then buys; direct pairs lead their side."""

    def rank(leg: Leg) -> tuple[int, int]:
        return (0 if leg.side == "sell" else 1, 1 if quote in (leg.sold, leg.bought) else 0)

    ordered = sorted(legs, key=rank)
    return [
        PlannedOrder.model_construct(
            leg=number,
            symbol=leg.market.symbol,
            base=leg.market.base,
            quote=leg.market.quote,
            side=leg.side,
            amount=leg.amount,
            price=leg.price,
            value=leg.value.quantize(_VALUE_PLACES),
            fee=leg.fee.quantize(_VALUE_PLACES),
            order_type=strategy.order_type,
            limit_price=None,
        )
        for number, leg in enumerate(ordered)
    ]


def _drift_rows(valuation: Valuation) -> list[AssetDrift]:
    managed = valuation.managed_value
    rows = []
    for asset, pos in valuation.positions.items():
        current = (pos.value / managed * HUNDRED).quantize(_WEIGHT_PLACES)
        target = (pos.target * HUNDRED).quantize(_WEIGHT_PLACES)
        rows.append(
            AssetDrift.model_construct(
                asset=asset,
                value=pos.value.quantize(_VALUE_PLACES),
                current_weight=current,
                target_weight=target,
                drift=current - target,
            )
        )
    return rows


def _expected_weights(legs: list[Leg], positions: dict[str, Position], quote: str) -> dict[str, Decimal]:
    """Weights after the legs fill at the planned prices with fees paid in the quote or the asset given up."""
    values = {a: p.value for a, p in positions.items()}
    for leg in legs:
        values[leg.sold] -= leg.value * (ONE + leg.fee_rate) if leg.side == "buy" else leg.value
        values[leg.bought] += leg.value * (ONE - leg.fee_rate) if leg.side == "sell" else leg.value
    total = sum(values.values(), ZERO)
    if total <= 0:
        return {a: ZERO for a in values}
    return {a: (v / total * HUNDRED).quantize(_WEIGHT_PLACES) for a, v in values.items()}


def _describe_drift(strategy: Strategy, pos: Position, deviation: Decimal, managed: Decimal) -> str:
    quote = strategy.quote_currency
    if not pos.in_targets:
        return f"{pos.asset} ({money(pos.value)} {quote}) is not in the targets"
    drift_pp = deviation / managed * HUNDRED
    band_pp = pos.band / managed * HUNDRED
    if strategy.threshold_kind == "value":
        side = "above" if deviation > 0 else "below"
        return f"{pos.asset} is {money(abs(deviation))} {quote} {side} target, beyond {describe_band(strategy)}"
    if strategy.threshold_kind == "relative":
        return (
            f"{pos.asset} drift {drift_pp:+.2f} pp beyond ±{band_pp:.2f} pp "
            f"({quantity(strategy.threshold)} % of {pos.target * HUNDRED:.2f} %)"
        )
    return f"{pos.asset} drift {drift_pp:+.1f} pp beyond {describe_band(strategy)}"


def _unpriced(holding: Holding, quote: str) -> LeftOutLeg:
    return LeftOutLeg.model_construct(
        asset=holding.asset,
        side="sell",
        value=ZERO,
        reason=f"{holding.asset} has no price in {quote}: left alone",
    )
