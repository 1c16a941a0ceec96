"""Value objects shared by several v1 messages."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from contracts.envelope import Contract, Money

ThresholdKind = Literal["absolute", "relative", "value"]
RebalanceMode = Literal["target", "band"]
OrderType = Literal["market", "limit"]
TriggeredBy = Literal["scheduler", "manual", "threshold", "api"]
Side = Literal["buy", "sell"]


class Strategy(Contract):
    """A frozen snapshot of a portfolio's strategy, taken when its run is due.

    Later stages use this snapshot, never the live row, so an edit during a run cannot change
    what the run does half way.
    """

    portfolio_id: str
    user_id: str
    name: str
    connection_id: str
    exchange_id: str
    # Percent weights per asset, summing to 100.
    target_weights: dict[str, Money]
    quote_currency: str = "USD"
    threshold: Money = Decimal("5")
    # absolute: percentage points; relative: percent of each target weight; value: quote currency.
    threshold_kind: ThresholdKind = "absolute"
    mode: RebalanceMode = "target"
    max_orders: int | None = None
    dry_run: bool = False
    always_rebalance: bool = False
    leave_alone: tuple[str, ...] = ()
    cash_reserve: Money = Decimal("0")
    order_type: OrderType = "market"
    limit_timeout_seconds: int = 60


class Holding(Contract):
    asset: str
    free: Money
    total: Money


class MarketRule(Contract):
    """One market's trading rules, as the exchange states them."""

    symbol: str  # "ETH/BTC"
    base: str
    quote: str
    min_amount: Money | None = None
    min_cost: Money | None = None
    amount_step: Money | None = None  # smallest increment of the base amount
    price_step: Money | None = None
    maker_fee: Money = Decimal("0.001")
    taker_fee: Money = Decimal("0.001")


class AssetDrift(Contract):
    asset: str
    value: Money  # in the quote currency
    current_weight: Money  # percent
    target_weight: Money  # percent
    drift: Money  # current - target, percentage points


class PlannedOrder(Contract):
    leg: int  # 0-based position in execution order
    symbol: str
    base: str
    quote: str
    side: Side
    amount: Money  # base amount, already on the market's step
    price: Money  # reference price (quote per base) used for the plan
    value: Money  # estimated value in the portfolio's quote currency
    fee: Money  # estimated fee in the portfolio's quote currency
    order_type: OrderType = "market"
    limit_price: Money | None = None


class LeftOutLeg(Contract):
    asset: str
    side: Side
    value: Money
    reason: str


class RunError(Contract):
    stage: str  # pricer, planner, executor, scheduler
    code: str  # machine-readable: missing_price, insufficient_funds, auth, lease_expired, ...
    message: str
    leg: int | None = None


# Error codes more than one service acts on.
# A leg that may be on the exchange when its run stopped (the executor names it in the run's
# errors; its reconciler looks it up and reports it, and the ledger adds it to the run's figures).
OUTCOME_UNKNOWN = "outcome_unknown"
# The same leg once the reconciler has found how it ended (the ledger rewrites the code).
OUTCOME_FOUND_LATE = "outcome_found_late"
# A leg of unknown outcome its owner gave up on (the connection's key revoked, the account closed):
# the executor reports it with this code, the ledger records the order as abandoned, and a run
# that named it as of unknown outcome says so with OUTCOME_ABANDONED.
LEG_ABANDONED = "abandoned"
OUTCOME_ABANDONED = "outcome_abandoned"


class Fill(Contract):
    """What the exchange reports for one order."""

    exchange_order_id: str | None = None
    status: Literal["open", "closed", "canceled", "rejected"] = "closed"
    filled: Money = Decimal("0")
    average_price: Money | None = None
    cost: Money = Decimal("0")  # in the market's quote currency
    fee: Money = Decimal("0")
    fee_currency: str | None = None
    fee_known: bool = True  # False: the exchange did not report this fill's fee (fee reads 0)
    value: Money = Decimal("0")  # in the portfolio's quote currency

