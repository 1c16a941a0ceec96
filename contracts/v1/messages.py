"""The v1 messages of one rebalance run, in flow order.

``correlation_id`` is always the run id. A stage that fails the run emits ``RebalanceCompleted``
with ``status="failed"`` so that every run ends in exactly one terminal event.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from contracts.envelope import Contract, Envelope, Money
from contracts.subjects import Subjects
from contracts.v1.strategy import (
    AssetDrift,
    Fill,
    Holding,
    LeftOutLeg,
    MarketRule,
    PlannedOrder,
    RunError,
    Strategy,
    TriggeredBy,
)


class RebalanceRequested(Envelope):
    """cmd: run this portfolio now (manual trigger from the API or CLI)."""

    portfolio_id: str
    requested_by: str | None = None  # user id
    triggered_by: TriggeredBy = "manual"
    dry_run: bool | None = None  # None: the portfolio's own setting


class SchedulerControl(Envelope):
    """cmd: start, stop, restart or reconfigure the scheduler."""

    action: Literal["start", "stop", "restart", "update-config", "check"]
    check_interval: str | None = None
    dry_run_mode: bool | None = None


class AbandonOrders(Envelope):
    """cmd: the owner of an exchange connection gives up on orders of unknown outcome on it (its
    key was revoked, its account closed): the executor looks each up once more, resolves one the
    exchange answers for as the reconciler would, and records the rest as abandoned, their
    outcome never known. Only legs of runs that have ended, on this user's connection, are
    touched."""

    user_id: str
    connection_id: str
    client_order_ids: list[str]


class ConnectionChanged(Envelope):
    """Announced to every pricer and executor process (core NATS, not stored): the owner replaced
    this connection's API key, so whatever a process holds of it (the key, an exchange client
    signed with it) is dropped and read again at its next call. A process that misses it drops
    the old key the first time the exchange refuses it."""

    connection_id: str


class RunStage(Envelope):
    """Fields every message of a running rebalance carries."""

    run_id: str
    portfolio_id: str
    user_id: str
    triggered_by: TriggeredBy
    started_at: datetime

    def next_stage(self) -> dict[str, Any]:
        """The envelope and run fields of the message this one causes."""
        return {
            **self.caused(),
            "run_id": self.run_id,
            "portfolio_id": self.portfolio_id,
            "user_id": self.user_id,
            "triggered_by": self.triggered_by,
            "started_at": self.started_at,
        }


class RebalanceDue(RunStage):
    strategy: Strategy
    due_at: datetime


class PortfolioValued(RunStage):
    strategy: Strategy
    holdings: list[Holding]
    prices: dict[str, Money]  # asset -> price in the quote currency
    total_value: Money
    markets: list[MarketRule]


class PlanCreated(RunStage):
    strategy: Strategy
    decision: Literal["rebalance", "skip"]
    reason: str
    portfolio_value: Money
    holdings: list[Holding]
    prices: dict[str, Money]
    drift: list[AssetDrift]
    orders: list[PlannedOrder]
    left_out: list[LeftOutLeg] = []
    expected_weights: dict[str, Money] = {}
    estimated_fees: Money = Decimal("0")
    turnover: Money = Decimal("0")


class OrderFacts(Contract):
    """What is said of one leg, whether in its own order event or inside ``OrdersReported``."""

    dry_run: bool
    exchange_id: str
    leg: int
    client_order_id: str
    symbol: str
    side: Literal["buy", "sell"]
    amount: Money
    order_type: Literal["market", "limit"] = "market"
    fill: Fill = Fill(status="open")
    error: RunError | None = None

    def facts(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in OrderFacts.model_fields}


class OrderEvent(OrderFacts, RunStage):
    """One leg's outcome as a message of its own (envelope and run fields first on the wire)."""


class OrderSubmitted(OrderEvent):
    pass


class OrderFilled(OrderEvent):
    pass


class OrderRejected(OrderEvent):
    """The exchange refused this leg (insufficient funds, invalid order); the run goes on."""


class OrderFailed(OrderEvent):
    """The leg could not be placed for a reason that fails the run (authentication, ...)."""


OrderOutcome = Literal["submitted", "filled", "rejected", "failed"]


class ReportedOrder(OrderFacts):
    """One leg's outcome inside ``OrdersReported``: what its own order event would carry."""

    outcome: OrderOutcome
    event_id: str  # the message id the leg's own order event has (history rows are keyed by it)
    occurred_at: datetime


class OrdersReported(RunStage):
    """Several legs' outcomes of one run in one message (the executor reports the legs it placed
    together at once): the same facts as one order event per leg, for a fraction of the messages."""

    orders: list[ReportedOrder]
    # Found by the executor's reconciler after the run stopped looking: the run's completion may
    # name these legs as of unknown outcome, and the ledger then adds them to the run's figures.
    reconciled: bool = False

    def order_events(self) -> list[OrderEvent]:
        """The order event of each leg, as if each had been sent on its own."""
        # Caused by the plan, as an order event sent alone would be.
        run = {**self.next_stage(), "causation_id": self.causation_id}
        return [
            ORDER_EVENTS[o.outcome](**run, message_id=o.event_id, occurred_at=o.occurred_at, **o.facts())
            for o in self.orders
        ]


ORDER_EVENTS: dict[OrderOutcome, type[OrderEvent]] = {
    "submitted": OrderSubmitted,
    "filled": OrderFilled,
    "rejected": OrderRejected,
    "failed": OrderFailed,
}

RunStatus = Literal["succeeded", "partial", "failed", "skipped"]


class RebalanceCompleted(RunStage):
    status: RunStatus
    dry_run: bool
    reason: str = ""
    quote_currency: str = ""
    portfolio_value: Money = Decimal("0")
    value_after: Money | None = None
    holdings_after: list[Holding] = []
    orders_planned: int = 0
    orders_executed: int = 0
    orders_failed: int = 0
    total_value_traded: Money = Decimal("0")
    fees: Money = Decimal("0")
    errors: list[RunError] = []
    completed_at: datetime

    @property
    def success(self) -> bool:
        return self.status in ("succeeded", "skipped")


RUN_MESSAGES: tuple[type[RunStage], ...] = (
    RebalanceDue,
    PortfolioValued,
    PlanCreated,
    OrderSubmitted,
    OrderFilled,
    OrderRejected,
    OrderFailed,
    OrdersReported,
    RebalanceCompleted,
)


def event_models(subjects: Subjects) -> dict[str, type[RunStage]]:
    """The model of every event subject of a run (what a consumer of ``evt.>`` decodes)."""
    return {
        subjects.rebalance_due: RebalanceDue,
        subjects.portfolio_valued: PortfolioValued,
        subjects.plan_created: PlanCreated,
        subjects.order_submitted: OrderSubmitted,
        subjects.order_filled: OrderFilled,
        subjects.order_rejected: OrderRejected,
        subjects.order_failed: OrderFailed,
        subjects.orders_reported: OrdersReported,
        subjects.rebalance_completed: RebalanceCompleted,
    }
