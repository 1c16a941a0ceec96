"""Funding: the sells pay for the buys, selling deeper only where their asset has room above its target."""

from __future__ import annotations

from decimal import Decimal

from services.planner.funding import sell_deeper
from services.planner.legs import Leg, fit_leg
from tests.unit.planner.helpers import market

D = Decimal


def _sell(base: str, amount: str, price: str, fee: str, step: str) -> Leg:
    leg = fit_leg(
        market(base, min_cost=None, amount_step=D(step), taker_fee=D(fee)), "sell", D(amount), D(price), D(price),
        "market", "USD",
    )
    assert isinstance(leg, Leg)
    return leg


def test_the_fewest_whole_steps_that_cover_the_shortfall_after_fees() -> None:
    dot = _sell("DOT", "100", "0.5", "0.01", "1")  # a step brings 0.495 USD after the fee
    added = sell_deeper([dot], D("1.2"), {"DOT": D(100)}, "USD")
    assert dot.amount == D(103) and dot.value == D("51.5")
    assert added == D("1.485")


def test_a_sell_grows_only_within_its_room_largest_room_first() -> None:
    dot = _sell("DOT", "100", "0.5", "0", "1")
    sol = _sell("SOL", "10", "2", "0", "1")
    rooms = {"DOT": D("1.2"), "SOL": D("5.9")}  # DOT: 2 steps; SOL: 2 steps, never a third
    added = sell_deeper([dot, sol], D(100), rooms, "USD")
    assert (sol.amount, dot.amount) == (D(12), D(102))
    assert added == D(5)


def test_no_room_no_change() -> None:
    dot = _sell("DOT", "100", "0.5", "0", "1")
    assert sell_deeper([dot], D(1), {"DOT": D("0.49")}, "USD") == 0
    assert sell_deeper([dot], D(1), {}, "USD") == 0
    assert dot.amount == D(100) and dot.value == D(50)
