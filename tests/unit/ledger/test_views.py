"""The ledger reads a valuation and a plan through views of its own: from the same wire JSON they
give exactly the history rows the whole contracts give, and they refuse what the ledger would store
wrong."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from contracts.envelope import Contract
from contracts.v1 import PlanCreated, PortfolioValued
from contracts.v1.strategy import Holding, Strategy
from services.ledger.records import Rows
from services.ledger.views import HoldingTotal, PlanView, QuoteCurrency, ValuedView
from tests.unit.contracts.samples import samples


def rows_of(event: Any) -> Rows:
    rows = Rows()
    rows.add(event)
    return rows


def plans() -> list[PlanCreated]:
    plan = samples()["PlanCreated"]
    assert isinstance(plan, PlanCreated) and plan.left_out and plan.drift and plan.orders
    skip = plan.model_copy(update={"decision": "skip", "reason": "within ±5 pp", "orders": [], "left_out": []})
    return [plan, skip]


@pytest.mark.parametrize("plan", plans(), ids=["rebalance", "skip"])
def test_a_plan_read_through_the_view_writes_the_rows_the_contract_writes(plan: PlanCreated) -> None:
    wire = plan.model_dump_json()
    view = PlanView.model_validate_json(wire)
    assert rows_of(view) == rows_of(PlanCreated.model_validate_json(wire))
    # The JSON stored for drift and orders is the contract's, to the digit.
    (row,) = rows_of(view).runs_planned
    drift, left_out, orders = (json.loads(text) for text in row[7:10])
    assert orders == [o.model_dump(mode="json") for o in plan.orders]
    assert drift == [d.model_dump(mode="json") for d in plan.drift]
    assert left_out == [leg.model_dump(mode="json") for leg in plan.left_out]


def test_a_valuation_read_through_the_view_writes_the_rows_the_contract_writes() -> None:
    valued = samples()["PortfolioValued"]
    assert isinstance(valued, PortfolioValued) and valued.markets and valued.holdings
    wire = valued.model_dump_json()
    view = ValuedView.model_validate_json(wire)
    assert rows_of(view) == rows_of(PortfolioValued.model_validate_json(wire))
    assert rows_of(view).snapshots[0][4] == {"BTC": "0.10000000", "USDC": "1600.5"}


# Narrower on purpose: a view of a nested model, or JSON objects kept as they arrived.
NARROWED = {"strategy", "holdings", "drift", "orders"}


@pytest.mark.parametrize(
    ("view", "contract"),
    [(ValuedView, PortfolioValued), (PlanView, PlanCreated), (QuoteCurrency, Strategy), (HoldingTotal, Holding)],
)
def test_a_view_declares_only_fields_of_its_contract_and_types_them_alike(
    view: type[Contract], contract: type[Contract]
) -> None:
    assert set(view.model_fields) <= set(contract.model_fields)
    for name, field in view.model_fields.items():
        if name not in NARROWED:
            theirs = contract.model_fields[name]
            assert (field.annotation, field.metadata, field.default) == (
                theirs.annotation, theirs.metadata, theirs.default
            ), name


def test_what_the_ledger_stores_is_still_validated() -> None:
    valued = json.loads(samples()["PortfolioValued"].model_dump_json())
    with pytest.raises(pydantic.ValidationError, match="total_value"):
        ValuedView.model_validate({**valued, "total_value": "lots"})
    with pytest.raises(pydantic.ValidationError, match="holdings"):
        ValuedView.model_validate({**valued, "holdings": [{"asset": "BTC"}]})
    plan = json.loads(samples()["PlanCreated"].model_dump_json())
    with pytest.raises(pydantic.ValidationError, match="decision"):
        PlanView.model_validate({**plan, "decision": "maybe"})
    with pytest.raises(pydantic.ValidationError, match="orders"):
        PlanView.model_validate({**plan, "orders": ["not an object"]})
    with pytest.raises(pydantic.ValidationError, match="left_out"):
        PlanView.model_validate({**plan, "left_out": [{"asset": "ETH"}]})


def test_what_the_ledger_does_not_read_is_left_to_its_consumers() -> None:
    """Tolerant reading (DESIGN.md): a valuation's market rules belong to the planner, which
    validates them; the ledger records the run's value whatever they say."""
    valued = json.loads(samples()["PortfolioValued"].model_dump_json())
    odd = {**valued, "markets": [{"symbol": 7}], "strategy": {"quote_currency": "EUR"}}
    with pytest.raises(pydantic.ValidationError):
        PortfolioValued.model_validate(odd)
    view = ValuedView.model_validate(odd)
    assert view.strategy.quote_currency == "EUR" and view.total_value == Decimal("8101.50160000")
