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
from services.planner.legs import DEFAULT_STEP, Leg, MarketIndex, Omission, fee_rate, fit_leg, money, quantity
from services.planner.routing import route_direct
from services.planner.settling import holdings_after, merge_legs
from services.planner.targets import desired_values, inner_band, shared_targets
from services.planner.valuation import (
    HUNDRED,
    ONE,
    ZERO,
    Balance,
    Position,
    Valuation,
    band_of,
    describe_band,
    value_portfolio,
)

Decision = Literal["rebalance", "skip"]

# Fee estimation converges geometrically (ratio ~ the fee rate); two or three rounds suffice.
_FEE_ROUNDS = 4
_WEIGHT_PLACES = Decimal("0.0001")
_EDGE_TOLERANCE = Decimal("1e-6")
# Differences this small, relative to the managed value, are rounding, not trades.
_NOISE = Decimal("1e-9")
_VALUE_PLACES = Decimal("1e-8")
# Said of an asset the plan cannot trade: it keeps what it holds and the others share the rest.
_RESCALED = "{asset} stays as held and the other targets share what is left"


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
    left_out: list[Omission]
    fees: Decimal
    stuck: frozenset[str]  # assets no market rule lets us trade at all towards their goal
    goals: dict[str, Decimal] = field(default_factory=dict)  # the value each asset was planned to end at


@dataclass(slots=True)
class _Pass:
    """One planning pass over a valuation: why it skips, or the trades it makes and what they fix."""

    skip: str | None
    left_out: list[Omission]
    trades: _Trades | None = None
    fixed: list[str] = field(default_factory=list)
    deviations: dict[str, Decimal] = field(default_factory=dict)


# Follow-up passes a plan may fold in (each must reduce the drift beyond the bands by more than
# rounding); one is almost always enough, most plans need none.
_SETTLE_PASSES = 4


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
        return Plan("skip", valuation.problem, valuation.managed_value, [], left_out=_public(unpriced))
    positions = valuation.positions
    managed = valuation.managed_value
    drift = _drift_rows(valuation)
    index = MarketIndex(markets, quote)
    first = _plan_pass(strategy, valuation, index, scheduled)
    if first.skip is not None or first.trades is None:
        return Plan(
            "skip",
            first.skip or "",
            managed,
            drift,
            left_out=_public(unpriced + first.left_out),
            expected_weights={row.asset: row.current_weight for row in drift},
        )

    settled = _settle(strategy, holdings, prices, index, first.trades)
    if not settled.done and any(quote not in (leg.market.base, leg.market.quote) for leg in settled.legs):
        # A direct pair can leave a remainder that only a second hop places (the quote leg of the
        # same asset truncated to a coarse step): the quote route alone may settle in one run.
        plain = _plan_pass(strategy, valuation, index, scheduled, saving_pairs=False)
        if plain.trades is not None:
            retry = _settle(strategy, holdings, prices, index, plain.trades)
            if retry.done:
                first, settled = plain, retry
    assert first.trades is not None
    legs, goals = settled.legs, settled.goals
    follow_up_left_out = settled.left_out
    after = _values_after(legs, positions)
    left_out = unpriced + first.trades.left_out + follow_up_left_out
    reported = {leg.asset for leg in left_out}
    left_out += _left_outside_band(strategy, positions, after, goals, reported, index)
    deviations = first.deviations
    if first.fixed:
        worst = max(first.fixed, key=lambda a: abs(deviations[a]) - positions[a].band)
        reason = _describe_drift(strategy, positions[worst], deviations[worst], managed)
    else:
        reason = "always rebalance when due" if scheduled else "manual run"
    return Plan(
        "rebalance",
        reason,
        managed,
        drift,
        _orders(legs, quote, strategy),
        _public(left_out),
        _expected_weights(after),
        sum((leg.fee for leg in legs), ZERO),
        sum((leg.value for leg in legs), ZERO),
    )


def _plan_pass(
    strategy: Strategy, valuation: Valuation, index: MarketIndex, scheduled: bool, *, saving_pairs: bool = True
) -> _Pass:
    """Skip (with the reason) or trades: the whole decision for one valuation. Without
    ``saving_pairs``, direct pairs are used only where they are the only route."""
    positions = valuation.positions
    managed = valuation.managed_value
    deviations = {a: p.value - p.target * managed for a, p in positions.items()}
    # A deviation within rounding of the band's edge (fee estimates, Decimal precision) is not drift.
    tolerance = managed * _EDGE_TOLERANCE
    out_of_band = [a for a, p in positions.items() if abs(deviations[a]) > p.band + tolerance]
    must_trigger = scheduled and not strategy.always_rebalance
    if must_trigger and not out_of_band:
        return _Pass(f"all assets within {describe_band(strategy)}", [])

    trades = _plan_trades(strategy, positions, managed, index, saving_pairs)
    if not trades.legs:
        why = "; ".join(leg.reason for leg in trades.left_out[:3]) or "every asset is on target"
        return _Pass(f"nothing tradable: {why}", trades.left_out)
    fixed = _fixed_assets(trades.legs, strategy.quote_currency, out_of_band, deviations)
    # Hysteresis: a scheduled run trades only when it brings the drift beyond the bands down by more
    # than rounding, so that a plan never trades back and forth what an earlier plan could not place.
    if must_trigger and fixed:
        after = _values_after(trades.legs, positions)
        if _excess(strategy, positions, after) >= _excess(strategy, positions, None) - tolerance:
            fixed = []
    if must_trigger and not fixed:
        stuck = ", ".join(_describe_drift(strategy, positions[a], deviations[a], managed) for a in out_of_band)
        return _Pass(f"no out-of-band asset can be traded ({stuck}); see the left-out legs", trades.left_out)
    return _Pass(None, trades.left_out, trades, fixed, deviations)


@dataclass(slots=True)
class _Settled:
    legs: list[Leg]
    goals: dict[str, Decimal]  # of the last pass that traded
    left_out: list[Omission]  # the follow-up passes' left-out legs
    done: bool  # a scheduled plan on the balances the legs produce skips


def _settle(
    strategy: Strategy,
    holdings: Sequence[Balance],
    prices: Mapping[str, Decimal],
    index: MarketIndex,
    trades: _Trades,
) -> _Settled:
    """The legs, extended until a scheduled plan on the balances they produce would skip.

    Whatever the first pass could not place (change below a step, a buy below the minimums, an
    asset that takes a stuck one's share) is placed now by the same rules a later run would apply,
    so that "rebalance or skip" is a stable function of the state: the next run sees nothing to do.
    """
    quote = strategy.quote_currency
    legs, goals = trades.legs, trades.goals
    left_out: list[Omission] = []
    for _ in range(_SETTLE_PASSES):
        valuation = value_portfolio(strategy, holdings_after(holdings, legs), prices)
        if valuation.problem is not None:
            return _Settled(legs, goals, left_out, True)
        follow_up = _plan_pass(strategy, valuation, index, scheduled=True)
        if follow_up.trades is None:
            return _Settled(legs, goals, left_out, True)
        merged = merge_legs(legs, follow_up.trades.legs, quote, strategy.max_orders, strategy.order_type)
        if isinstance(merged, Leg):
            hop = _second_hop(merged, legs, quote)
            return _Settled(legs, goals, left_out if hop is None else [*left_out, hop], False)
        legs, goals = merged, follow_up.trades.goals
        left_out = follow_up.trades.left_out
    return _Settled(legs, goals, left_out, False)


def _plan_trades(
    strategy: Strategy, positions: dict[str, Position], managed: Decimal, index: MarketIndex, saving_pairs: bool
) -> _Trades:
    """Trades that land on the mode's goal after paying their own fees (a fixed point in the fees)."""
    frozen: frozenset[str] = frozenset()
    why_frozen: list[Omission] = []
    trades = _Trades([], [], ZERO, frozenset())
    quote = strategy.quote_currency
    margins = {a: _step_value(index.get(a, quote), p.price) for a, p in positions.items() if a != quote}
    fees = _fee_estimate(strategy, positions, managed, index, margins)
    for _ in range(_FEE_ROUNDS + len(positions)):
        targets = shared_targets(positions, managed - fees, frozen)
        desired = desired_values(
            strategy.mode, strategy.threshold_kind, positions, quote, managed - fees, targets, frozen, margins
        )
        trades = _trades_towards(desired, targets, strategy, positions, index, managed - fees, margins, saving_pairs)
        if not trades.stuck <= frozen:
            why_frozen += [leg for leg in trades.left_out if leg.asset in trades.stuck - frozen]
            frozen |= trades.stuck
            fees = trades.fees
            continue
        if abs(trades.fees - fees) <= managed * _NOISE:
            break
        fees = trades.fees
    # A frozen asset's shortfall, at the fees the plan converged on (not those of the round that froze
    # it). Its reason also says that the other targets moved, or a reader sees them bought past theirs.
    investable = managed - fees
    trades.left_out = [
        leg._replace(
            value=abs(positions[leg.asset].target * investable - positions[leg.asset].value),
            reason=f"{leg.reason}; {_RESCALED.format(asset=leg.asset)}",
        )
        if leg.asset in positions
        else leg
        for leg in why_frozen
    ] + trades.left_out
    return trades


def _fee_estimate(
    strategy: Strategy,
    positions: dict[str, Position],
    managed: Decimal,
    index: MarketIndex,
    margins: dict[str, Decimal],
) -> Decimal:
    """The fees of trading each asset straight to its goal through the quote, before any leg is fitted:
    a start for the fee fixed point that is off only by rounding and the fees' own fees, so that it
    converges in two rounds instead of four."""
    quote = strategy.quote_currency
    targets = shared_targets(positions, managed, frozenset())
    desired = desired_values(
        strategy.mode, strategy.threshold_kind, positions, quote, managed, targets, frozenset(), margins
    )
    fees = ZERO
    for asset, goal in desired.items():
        market = index.get(asset, quote)
        if market is not None:
            fees += abs(goal - positions[asset].value) * fee_rate(market, strategy.order_type)
    return fees


def _step_value(market: MarketRule | None, price: Decimal) -> Decimal:
    """The value of one amount step: the most truncating an order to its step leaves short."""
    if market is None:
        return ZERO
    return (market.amount_step or DEFAULT_STEP) * price


def _trades_towards(
    desired: dict[str, Decimal],
    targets: dict[str, Decimal],
    strategy: Strategy,
    positions: dict[str, Position],
    index: MarketIndex,
    investable: Decimal,
    margins: dict[str, Decimal],
    saving_pairs: bool,
) -> _Trades:
    """Legs from the current values to ``desired``, with the idle change spent. A sell may go deeper
    than ``desired``, never below the asset's target, when the buys need its proceeds."""
    quote, order_type = strategy.quote_currency, strategy.order_type
    noise = investable * _NOISE  # differences this small are rounding, not trades
    sells: dict[str, Decimal] = {}  # base amounts
    buys: dict[str, Decimal] = {}  # values in the quote
    left_out: list[Omission] = []
    stuck: set[str] = set()
    for asset, goal in desired.items():
        pos = positions[asset]
        delta = goal - pos.value
        if delta < 0:
            wanted = pos.total if goal <= 0 else -delta / pos.price
            if wanted > pos.free:
                locked = wanted - pos.free
                left_out.append(
                    Omission(
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

    legs = route_direct(sells, buys, positions, index, quote, order_type, noise, saving_pairs)
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
                pairs = [m.symbol for m in index.between(asset)]
                if pairs:
                    reason += f"; a later run may trade it through {', '.join(pairs)} once the other side is held"
                left_out.append(Omission(asset=asset, side=side, value=value, reason=reason))
                stuck.add(asset)
                continue
            leg = fit_leg(market, side, amount, pos.price, pos.price, order_type, quote)
            if isinstance(leg, str):
                left_out.append(Omission(asset=asset, side=side, value=value, reason=leg))
                stuck.add(asset)
            else:
                legs.append(leg)

    spendable = positions[quote].free
    legs, dropped = limit_orders(legs, strategy.max_orders, spendable, quote)
    for leg in dropped:
        left_out.append(
            Omission(
                asset=leg.bought if leg.sold == quote else leg.sold,
                side="buy" if leg.sold == quote else "sell",
                value=leg.value,
                reason=f"{leg.market.symbol} {leg.side} of {money(leg.value)} {quote} left for a later run: "
                f"at most {strategy.max_orders} orders per rebalance",
            )
        )
    legs, unfunded = fund_buys(legs, spendable, quote, order_type, _sell_rooms(legs, targets, positions, quote))
    left_out += unfunded
    # A buy that funding drops is as stuck as one below the minimums: its share goes to the other
    # targets rather than sells being made for it that pay for nothing (or cannot be made at all).
    stuck.update(omission.asset for omission in unfunded)
    _spend_idle_change(legs, desired, positions, quote, investable, margins)
    traded = {leg.sold for leg in legs} | {leg.bought for leg in legs}
    return _Trades(legs, left_out, sum((leg.fee for leg in legs), ZERO), frozenset(stuck - traded), desired)


def _sell_rooms(
    legs: list[Leg], targets: dict[str, Decimal], positions: dict[str, Position], quote: str
) -> dict[str, Decimal]:
    """The value each sell into the quote may still add: down to its asset's target, within its free
    balance, after every leg that gives the asset up (a direct pair may spend it too; a plan never
    buys what it sells, so nothing received counts)."""
    after = _values_after(legs, positions)
    rooms = {}
    for leg in legs:
        if leg.bought == quote and leg.side == "sell":
            pos = positions[leg.sold]
            left = after[leg.sold]
            rooms[leg.sold] = min(left - targets.get(leg.sold, ZERO), left - (pos.total - pos.free) * pos.price)
    return rooms


def _spend_idle_change(
    legs: list[Leg],
    desired: dict[str, Decimal],
    positions: dict[str, Position],
    quote: str,
    investable: Decimal,
    margins: dict[str, Decimal],
) -> None:
    """Cash left above the quote's goal by truncated amounts goes to the planned buys, each up to
    its goal plus the inside of its band: change a buy can absorb must not idle for the next run."""
    proceeds = sum((leg.value * (ONE - leg.fee_rate) for leg in legs if leg.bought == quote), ZERO)
    costs = sum((leg.value * (ONE + leg.fee_rate) for leg in legs if leg.sold == quote), ZERO)
    cash_goal = investable - sum(desired.values(), ZERO)
    change = min(positions[quote].value + proceeds - costs - cash_goal, positions[quote].free + proceeds - costs)
    if change > 0:
        shrink = investable / sum((p.value for p in positions.values()), ZERO)
        rooms = {
            a: goal + inner_band(positions[a].band * shrink, margins.get(a, ZERO)) - positions[a].value
            for a, goal in desired.items()
        }
        spend_change(legs, change, rooms, quote)


def _second_hop(leg: Leg, legs: list[Leg], quote: str) -> Omission | None:
    """Why a follow-up leg waits for a later run, when it is the second hop of a route through a
    direct pair: it trades, one way, an asset that this plan trades the other way on another market
    (through a direct pair on one side or the other). One run cannot chain the two: the executor
    places every sell before any buy, and a plan never sells what it buys."""
    crossed = next(
        (other for other in legs if other.bought == leg.sold != quote or other.sold == leg.bought != quote), None
    )
    if crossed is None or (_quote_leg(leg, quote) and _quote_leg(crossed, quote)):
        return None
    side: Side
    if crossed.bought == leg.sold:
        asset, side, verb = leg.bought, "buy", "buys"
    else:
        asset, side, verb = leg.sold, "sell", "sells"
    middle = leg.sold if side == "buy" else leg.bought
    return Omission(
        asset=asset,
        side=side,
        value=leg.value,
        reason=(
            f"{asset} {side} of {money(leg.value)} {quote} needs {leg.market.symbol} with the {middle} this plan "
            f"{verb} on {crossed.market.symbol}: a later run may trade it through {leg.market.symbol} "
            f"once the other side is held"
        ),
    )


def _quote_leg(leg: Leg, quote: str) -> bool:
    return quote in (leg.market.base, leg.market.quote)


def _fixed_assets(legs: list[Leg], quote: str, out_of_band: list[str], deviations: dict[str, Decimal]) -> list[str]:
    """The out-of-band assets that the legs move towards their targets: sold when above, bought when
    below. Trades that only move an asset further away (it takes a stuck asset's share) fix nothing."""
    sold = {leg.sold for leg in legs}
    bought = {leg.bought for leg in legs}
    return [a for a in out_of_band if (a in sold if deviations[a] > 0 else a in bought)]


def _orders(legs: list[Leg], quote: str, strategy: Strategy) -> list[PlannedOrder]:
    """Sells first (they fund the buys), then buys; direct pairs lead their side."""

    def rank(leg: Leg) -> tuple[int, int]:
        return (0 if leg.side == "sell" else 1, 1 if quote in (leg.sold, leg.bought) else 0)

    ordered = sorted(legs, key=rank)
    return [
        PlannedOrder(
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
            AssetDrift(
                asset=asset,
                value=pos.value.quantize(_VALUE_PLACES),
                current_weight=current,
                target_weight=target,
                drift=current - target,
            )
        )
    return rows


def _values_after(legs: list[Leg], positions: dict[str, Position]) -> dict[str, Decimal]:
    """Values after the legs fill at the planned prices with fees paid in the quote or the asset given up."""
    values = {a: p.value for a, p in positions.items()}
    for leg in legs:
        values[leg.sold] -= leg.value * (ONE + leg.fee_rate) if leg.side == "buy" else leg.value
        values[leg.bought] += leg.value * (ONE - leg.fee_rate) if leg.side == "sell" else leg.value
    return values


def _excess(strategy: Strategy, positions: dict[str, Position], values: dict[str, Decimal] | None) -> Decimal:
    """How far, in total, the assets lie beyond their bands (now, or at ``values`` after a plan)."""
    if values is None:
        values = {a: p.value for a, p in positions.items()}
    total = sum(values.values(), ZERO)
    excess = ZERO
    for asset, value in values.items():
        pos = positions[asset]
        band = band_of(strategy, pos.target, total) if pos.in_targets else ZERO
        excess += max(abs(value - pos.target * total) - band, ZERO)
    return excess


def _expected_weights(values: dict[str, Decimal]) -> dict[str, Decimal]:
    total = sum(values.values(), ZERO)
    if total <= 0:
        return {a: ZERO for a in values}
    return {a: (v / total * HUNDRED).quantize(_WEIGHT_PLACES) for a, v in values.items()}


def _left_outside_band(
    strategy: Strategy,
    positions: dict[str, Position],
    after: dict[str, Decimal],
    goals: dict[str, Decimal],
    reported: set[str],
    index: MarketIndex,
) -> list[Omission]:
    """Assets the plan leaves outside their band without a left-out leg saying why: the remainder is
    smaller than anything the market takes (one amount step, its minimums). Named, never silent."""
    quote = strategy.quote_currency
    total = sum(after.values(), ZERO)
    if total <= 0:
        return _reserve_takes_all(strategy, positions, after, reported)
    tolerance = total * _EDGE_TOLERANCE
    notes = []
    for asset, value in after.items():
        pos = positions[asset]
        if asset == quote or asset in reported:
            continue
        deviation = value - pos.target * total
        band = band_of(strategy, pos.target, total) if pos.in_targets else ZERO
        if abs(deviation) <= band + tolerance:
            continue
        # Off target by design: its goal takes the share of an asset that cannot be traded (reported),
        # and it ends within the band around that goal. A goal inside the band is no excuse.
        goal = goals.get(asset, value)
        if abs(goal - pos.target * total) > band + tolerance and abs(value - goal) <= band + tolerance:
            continue
        side: Side = "sell" if deviation > 0 else "buy"
        market = index.get(asset, quote)
        step = (market.amount_step or DEFAULT_STEP) if market else None
        rule = f"less than one amount step of {quantity(step)} {asset}" if step else "no market to trade it"
        if market is not None and (market.min_amount or market.min_cost):
            rule += " or below the exchange minimum"
        notes.append(
            Omission(
                asset=asset,
                side=side,
                value=abs(deviation) - band,
                reason=(
                    f"{asset} ends {money(abs(deviation))} {quote} from its target, outside "
                    f"{describe_band(strategy)}: the rest is {rule}"
                ),
            )
        )
    return notes


def _reserve_takes_all(
    strategy: Strategy, positions: dict[str, Position], after: dict[str, Decimal], reported: set[str]
) -> list[Omission]:
    """After the legs' fees the portfolio is worth no more than its cash reserve: the reserve takes
    everything, and every target asset ends off its target. Said once per asset, never silent."""
    quote = strategy.quote_currency
    reserve = f"{money(strategy.cash_reserve)} {quote}"
    return [
        Omission(
            asset=asset,
            side="buy",
            value=after[asset],
            reason=f"{asset} ends at {money(after[asset])} {quote}: after fees the portfolio is not worth "
            f"more than its cash reserve of {reserve}",
        )
        for asset, pos in positions.items()
        if asset != quote and pos.in_targets and asset not in reported
    ]


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


def _public(omissions: list[Omission]) -> list[LeftOutLeg]:
    return [LeftOutLeg(**o._asdict()) for o in omissions]


def _unpriced(holding: Balance, quote: str) -> Omission:
    return Omission(
        asset=holding.asset,
        side="sell",
        value=ZERO,
        reason=f"{holding.asset} has no price in {quote}: left alone",
    )
