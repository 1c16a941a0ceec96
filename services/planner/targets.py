"""Where each asset should end: at its target, or at the edge of its band.

Values are in the quote currency. ``investable`` is the managed value minus the fees the trades
will cost, so that the portfolio lands on its targets after paying them.
"""

from __future__ import annotations

from decimal import Decimal

from contracts.v1.strategy import RebalanceMode, ThresholdKind
from services.planner.valuation import ONE, ZERO, Position


def desired_values(
    mode: RebalanceMode,
    kind: ThresholdKind,
    positions: dict[str, Position],
    quote: str,
    investable: Decimal,
    targets: dict[str, Decimal],
    frozen: frozenset[str] = frozenset(),
    margins: dict[str, Decimal] | None = None,
) -> dict[str, Decimal]:
    """The value every asset but the quote should hold after the rebalance, given each asset's
    ``targets`` value (``shared_targets`` of the same ``investable`` and ``frozen``).

    In band mode assets stop inside their band's edge by ``margins`` (one amount step, the most
    that truncating an order leaves short), so that rounding never leaves an asset out of its band
    for the next run to trade again.

    ``frozen`` assets cannot be traded (no market, below every minimum): they keep their value and
    the other targets share what they hold above or below their own, so that a stuck asset
    neither leaves cash idle nor has sells made for buys that cannot happen.
    """
    if mode == "target":
        return {
            a: (p.value if a in frozen else targets[a] if p.in_targets else ZERO)
            for a, p in positions.items()
            if a != quote
        }

    # Bands proportional to the portfolio shrink with the fees, as they will after the trades.
    managed = sum((p.value for p in positions.values()), ZERO)
    shrink = investable / managed if kind != "value" and managed > 0 else ONE
    desired: dict[str, Decimal] = {}
    for asset, pos in positions.items():
        if asset == quote:
            continue
        if asset in frozen:
            desired[asset] = pos.value
            continue
        if not pos.in_targets:
            desired[asset] = ZERO
            continue
        target = targets[asset]
        band = inner_band(pos.band * shrink, margins.get(asset, ZERO) if margins else ZERO)
        desired[asset] = min(max(pos.value, target - band, ZERO), target + band)

    # The quote takes what the others leave. Proceeds stay in cash only within the quote's own band,
    # and only when cash is one of the targets; otherwise they are reinvested.
    cash = investable - sum(desired.values(), ZERO)
    q = positions[quote]
    target_q = targets[quote]
    band_q = inner_band(q.band * shrink, ZERO)
    high = target_q + band_q if q.target > 0 else target_q
    low = max(target_q - band_q, ZERO)
    if cash > high:
        _move_towards_target(desired, targets, positions, cash - high, frozen, up=True)
    elif cash < low:
        _move_towards_target(desired, targets, positions, low - cash, frozen, up=False)
    return desired


# Part of the band kept clear besides the rounding margin: fee estimates and price rounding.
_BAND_SLACK = Decimal("0.01")


def inner_band(band: Decimal, margin: Decimal) -> Decimal:
    """The band's half-width less the margin, or 0 (aim at the target) when the band is narrower."""
    return max(band * (ONE - _BAND_SLACK) - margin, ZERO)


def shared_targets(positions: dict[str, Position], investable: Decimal, frozen: frozenset[str]) -> dict[str, Decimal]:
    """Each asset's target value, with what the ``frozen`` ones hold above or below theirs shared by the rest."""
    targets = {a: p.target * investable for a, p in positions.items()}
    if not frozen:
        return targets
    frozen_value = sum((positions[a].value for a in frozen), ZERO)
    frozen_target = sum((targets[a] for a in frozen), ZERO)
    rest = investable - frozen_target
    if rest <= 0:
        return targets
    factor = max(investable - frozen_value, ZERO) / rest
    return {a: (t if a in frozen else t * factor) for a, t in targets.items()}


def _move_towards_target(
    desired: dict[str, Decimal],
    targets: dict[str, Decimal],
    positions: dict[str, Position],
    amount: Decimal,
    frozen: frozenset[str],
    *,
    up: bool,
) -> None:
    """Shift ``amount`` of value into (up) or out of assets, each only towards its target.

    Assets already traded in that direction come first, so that the shift adds no new orders.
    """
    sign = 1 if up else -1
    already = [a for a, v in desired.items() if sign * (v - positions[a].value) > 0]
    others = [a for a in desired if a not in already and a not in frozen]
    for group in (already, others):
        rooms = {a: sign * (targets[a] - desired[a]) for a in group}
        rooms = {a: r for a, r in rooms.items() if r > 0}
        room = sum(rooms.values(), ZERO)
        if room <= 0:
            continue
        if amount >= room:
            for asset in rooms:
                desired[asset] = targets[asset]
            amount -= room
        else:
            share = amount / room
            for asset, r in rooms.items():
                desired[asset] += sign * r * share
            return
