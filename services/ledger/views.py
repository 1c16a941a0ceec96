"""What the ledger reads of the two largest events of a run, as tolerant readers (DESIGN.md:
consumers ignore unknown fields).

Of a valuation the ledger stores the holdings' totals, the prices and the total; of a plan its
decision and value, and its drift and orders as JSON. Validating the whole contracts first (a
valuation's market rules and the rest of its strategy, every Decimal of every planned order) only
to serialize drift and orders back was over a tenth of the ledger's CPU. These views declare
only what the ledger reads: every value it stores as a column is validated as the contract says;
drift and orders are kept as the JSON objects they arrived as, digits untouched (the executor
validates the same plan whole before it trades).
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
