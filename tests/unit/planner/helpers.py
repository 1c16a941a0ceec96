"""Builders for planner tests and an independent model of what a plan does to the balances."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from contracts.v1.strategy import Holding, MarketRule, Strategy
from services.planner.core import Plan

D = Decimal


def strategy(targets: Mapping[str, str | int | Decimal], **overrides: Any) -> Strategy:
    fields: dict[str, Any] = {
        "portfolio_id": "p1",
        "user_id": "u1",
        "name": "test",
        "connection_id": "c1",
        "exchange_id": "paper",
        "target_weights": {a: D(str(w)) for a, w in targets.items()},
        "quote_currency": "USD",
    }
    fields.update(overrides)
    return Strategy(**fields)


def holdings(amounts: Mapping[str, str | int | Decimal]) -> list[Holding]:
    return [Holding(asset=a, free=D(str(q)), total=D(str(q))) for a, q in amounts.items()]


def market(base: str, quote: str = "USD", **rules: Any) -> MarketRule:
    defaults: dict[str, Any] = {"min_cost": D("10"), "amount_step": D("0.00001"), "taker_fee": D("0.001")}
    defaults.update(rules)
    return MarketRule(symbol=f"{base}/{quote}", base=base, quote=quote, **defaults)


def markets(bases: Iterable[str], quote: str = "USD", **rules: Any) -> list[MarketRule]:
    return [market(b, quote, **rules) for b in bases if b != quote]


def prices(values: Mapping[str, str | int]) -> dict[str, Decimal]:
    return {a: D(str(p)) for a, p in values.items()}


def apply_plan(plan: Plan, start: Mapping[str, Decimal], markets: Iterable[MarketRule]) -> dict[str, Decimal]:
    """Fill every order at its planned price, fees paid in what the order gives up (a conservative
    model: the exchange may take a buy's fee from the asset received instead)."""
    fees = {m.symbol: m.taker_fee for m in markets}
    balances = dict(start)
    for order in plan.orders:
        rate = fees[order.symbol]
        cost = order.amount * order.price
        if order.side == "sell":
            balances[order.base] = balances.get(order.base, D(0)) - order.amount
            balances[order.quote] = balances.get(order.quote, D(0)) + cost * (1 - rate)
        else:
            balances[order.quote] = balances.get(order.quote, D(0)) - cost * (1 + rate)
            balances[order.base] = balances.get(order.base, D(0)) + order.amount
    return balances


def as_holdings(balances: Mapping[str, Decimal]) -> list[Holding]:
    return [Holding(asset=a, free=q, total=q) for a, q in balances.items()]
