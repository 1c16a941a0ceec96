"""Settling: a plan leaves the portfolio where the next scheduled plan sees nothing worth doing."""

from __future__ import annotations

from decimal import Decimal

from contracts.v1.strategy import MarketRule
from services.planner.core import Plan, plan_rebalance
from services.planner.legs import Leg, fit_leg
from services.planner.settling import holdings_after, merge_legs
from tests.unit.planner.helpers import apply_plan, as_holdings, holdings, market, strategy

D = Decimal


def _replan(plan: Plan, start: dict[str, Decimal], rules: list[MarketRule], **strategy_fields: object) -> Plan:
    targets = strategy_fields.pop("targets")
    assert isinstance(targets, dict)
    prices = strategy_fields.pop("prices")
    assert isinstance(prices, dict)
    after = apply_plan(plan, start, rules)
    return plan_rebalance(strategy(targets, **strategy_fields), as_holdings(after), prices, rules)


def test_leftover_change_goes_to_the_finest_grid_so_a_new_plan_skips() -> None:
    # 0.1 ETH (0.005 USD) cannot absorb the change that truncating ETH leaves; BTC (8 decimals) can.
    rules = [
        market("BTC", min_cost=None, amount_step=None, taker_fee=D("0.001")),
        market("ETH", min_cost=None, amount_step=D("0.1"), taker_fee=D("0")),
    ]
    prices = {"BTC": D("0.05"), "ETH": D("0.05")}
    start = {"USD": D("0.02")}
    fields: dict[str, object] = {"threshold": D(5), "threshold_kind": "relative"}
    plan = plan_rebalance(strategy({"BTC": 50, "ETH": 50}, **fields), holdings(start), prices, rules, scheduled=False)
    assert plan.decision == "rebalance"
    replan = _replan(plan, start, rules, targets={"BTC": 50, "ETH": 50}, prices=prices, **fields)
    assert replan.decision == "skip", (replan.reason, replan.orders)
    after = apply_plan(plan, start, rules)
    assert after["USD"] >= 0


def test_a_truncated_sell_below_the_reserve_does_not_buy_what_the_next_run_sells() -> None:
    # SOL's step leaves 4 USD of it unsold, so the cash ends below the 50 USD reserve: buying USDC
    # with it would have the next run sell that USDC again.
    rules = [
        market("SOL", min_cost=D(1), amount_step=D("0.001")),
        market("USDC", min_amount=D("0.01"), min_cost=None, amount_step=D("1E-8")),
    ]
    prices = {"SOL": D("47410.1801"), "USDC": D("0.6187")}
    start = {"SOL": D("0.001086053668039113818932740144"), "USDC": D("0.01616292225634394698561499919"), "USD": D(0)}
    fields: dict[str, object] = {"threshold": D("2.5"), "mode": "band", "cash_reserve": D(50)}
    targets = {"USDC": D("67.5"), "USD": D("32.5")}
    plan = plan_rebalance(strategy(targets, **fields), holdings(start), prices, rules, scheduled=False)
    replan = _replan(plan, start, rules, targets=targets, prices=prices, **fields)
    assert replan.decision == "skip", (replan.reason, replan.orders, plan.orders)
    assert not [o for o in plan.orders if o.symbol == "USDC/USD" and o.side == "buy"]


def test_a_remainder_that_needs_a_second_hop_through_a_direct_pair_is_reported() -> None:
    # ETH/USD needs 1 ETH and only 0.02 ETH is held: ETH reaches USD only through USDC, two hops.
    rules = [
        market("USDC", min_amount=D("0.01"), min_cost=None, amount_step=D("0.001"), taker_fee=D(0)),
        market("ETH", min_amount=D(1), min_cost=None, amount_step=D("1E-8"), taker_fee=D("0.0026")),
        market("USDC", "ETH", min_amount=D("0.0001"), min_cost=None, amount_step=D(1)),
    ]
    prices = {"USDC": D("0.3772"), "ETH": D("48366.1780")}
    start = {"ETH": D("0.02029538079275149671739619368"), "USD": D(0)}
    fields: dict[str, object] = {"threshold": D("7.8"), "mode": "band", "cash_reserve": D(50)}
    targets = {"USDC": 28, "USD": 52, "ETH": 20}
    plan = plan_rebalance(strategy(targets, **fields), holdings(start), prices, rules, scheduled=False)
    assert [o.symbol for o in plan.orders] == ["USDC/ETH"]
    hops = [leg for leg in plan.left_out if "a later run may trade it through USDC/USD" in leg.reason]
    assert hops and hops[0].asset == "USD" and hops[0].side == "buy"


def _leg(rule: MarketRule, side: str, amount: str, price: str = "2") -> Leg:
    leg = fit_leg(rule, "buy" if side == "buy" else "sell", D(amount), D(price), D(price), "market", "USD")
    assert isinstance(leg, Leg)
    return leg


def test_merge_adds_nets_cancels_and_refuses_a_crossing() -> None:
    sol, usdc = market("SOL", min_cost=None), market("USDC", min_cost=None)
    pair = market("SOL", "USDC", min_cost=None)
    plan = [_leg(sol, "buy", "3"), _leg(usdc, "sell", "5")]

    added = merge_legs(plan, [_leg(sol, "buy", "1")], "USD", None, "market")
    assert isinstance(added, list) and [(leg.side, leg.amount) for leg in added] == [("buy", D(4)), ("sell", D(5))]
    assert added[0].value == D(8)

    netted = merge_legs(plan, [_leg(sol, "sell", "1")], "USD", None, "market")
    assert isinstance(netted, list) and [(leg.side, leg.amount) for leg in netted] == [("buy", D(2)), ("sell", D(5))]

    cancelled = merge_legs(plan, [_leg(sol, "sell", "3")], "USD", None, "market")
    assert isinstance(cancelled, list) and [leg.market.symbol for leg in cancelled] == ["USDC/USD"]

    # Selling the SOL this plan buys, through another market, is a second hop: refused.
    crossing = _leg(pair, "sell", "1")
    assert merge_legs(plan, [crossing], "USD", None, "market") is crossing
    # One order more than allowed: refused.
    extra = _leg(market("ADA", min_cost=None), "buy", "1")
    assert merge_legs(plan, [extra], "USD", 2, "market") is extra


def test_holdings_after_is_the_fill_model_of_the_tests() -> None:
    rules = [market("BTC", taker_fee=D("0.0026")), market("ETH", "BTC", taker_fee=D("0.001"))]
    prices = {"BTC": D("50000"), "ETH": D("2500")}
    start = {"BTC": D("0.3"), "ETH": D(1), "USD": D(1000)}
    plan = plan_rebalance(strategy({"BTC": 30, "ETH": 70}), holdings(start), prices, rules, scheduled=False)
    assert plan.orders
    expected = apply_plan(plan, start, rules)
    # The plan's own legs are not public; rebuild them from the orders to compare the two models.
    legs = [
        Leg(
            next(r for r in rules if r.symbol == o.symbol),
            o.side,
            o.amount,
            o.price,
            o.value,
            next(r for r in rules if r.symbol == o.symbol).taker_fee,
            o.base if o.side == "sell" else o.quote,
            o.quote if o.side == "sell" else o.base,
            o.amount,
            prices[o.base],
        )
        for o in plan.orders
    ]
    simulated = {b.asset: b.total for b in holdings_after(holdings(start), legs)}
    assert simulated == expected
