"""What the ledger reads of the two largest events of a run, as tolerant readers (DESIGN.md:
consumers ignore unknown fields).

The ledger stores a valuation's holdings, prices and total, and a plan's drift and orders as the
JSON they arrived as. Validating the whole contract first (a valuation's market rules and the
rest of its strategy, every Decimal of every planned order) only to serialize it back was over a
tenth of the ledger's CPU. These views declare only what the ledger reads: every column it fills
is validated as the contract says; drift and orders are kept as plain JSON objects, their values
untouched, and the planner and executor hold them to the contract.
"""

from __future__ import annotations

from typing import Any, Literal

from contracts.envelope import Contract, Money
from contracts.v1 import RunStage
from contracts.v1.strategy import LeftOutLeg

# A JSON object stored as it arrived: strings stay strings, so Decimals keep their exact digits.
JsonObject = dict[str, Any]


class QuoteCurrency(Contract):
    """The one field of a valuation's strategy the ledger reads."""

    quote_currency: str = "USD"


class HoldingTotal(Contract):
    asset: str
    total: Money


class ValuedView(RunStage):
    """``PortfolioValued`` as the ledger reads it: without its market rules or strategy."""

    strategy: QuoteCurrency
    holdings: list[HoldingTotal]
    prices: dict[str, Money]
    total_value: Money


class PlanView(RunStage):
    """``PlanCreated`` as the ledger reads it: drift and orders as JSON, no holdings or prices."""

    decision: Literal["rebalance", "skip"]
    reason: str
    portfolio_value: Money
    drift: list[JsonObject]
    orders: list[JsonObject]
    left_out: list[LeftOutLeg] = []  # their reasons go into the activity row: read, so validated
