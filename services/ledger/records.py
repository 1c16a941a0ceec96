"""From events to history rows: pure, no I/O.

``Rows`` collects, per table, the rows a batch of events writes; the store writes each table
with one statement per batch. Each row is keyed so that writing it twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pydantic_core

from contracts.envelope import Contract
from contracts.v1 import (
    OrderEvent,
    OrderOutcome,
    OrdersReported,
    PlanCreated,
    PortfolioValued,
    RebalanceCompleted,
    RebalanceDue,
    RunStage,
)
from contracts.v1.messages import ORDER_EVENTS, OrderFacts
from contracts.v1.strategy import LEG_ABANDONED, OUTCOME_UNKNOWN
from services.common.db import RawJson
from services.ledger.views import JsonObject, PlanView, ValuedView

# What each order event says of its leg, as ``OrdersReported`` names it.
ORDER_OUTCOMES: dict[type[OrderEvent], OrderOutcome] = {event: outcome for outcome, event in ORDER_EVENTS.items()}

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "USDT": "₮", "JPY": "¥"}


def money(value: Decimal, quote: str) -> str:
    """The seed's money format: $27,500.00 / €9,000.00 / 12.50 USDC."""
    symbol = CURRENCY_SYMBOLS.get(quote)
    return f"{symbol}{value:,.2f}" if symbol else f"{value:,.2f} {quote}"


def _dump(items: Iterable[Any]) -> list[Any]:
    return [i.model_dump(mode="json") for i in items]


def _json(value: Contract | Sequence[Contract] | Sequence[JsonObject]) -> RawJson:
    """A jsonb column's value (a model, a list of them, or JSON objects as they arrived)
    serialized by pydantic directly: the same JSON as ``model_dump`` and ``json.dumps``, in half
    the time."""
    return RawJson(pydantic_core.to_json(value).decode())


@dataclass
class Rows:
    runs_started: list[tuple[Any, ...]] = field(default_factory=list)
    runs_valued: list[tuple[Any, ...]] = field(default_factory=list)
    runs_planned: list[tuple[Any, ...]] = field(default_factory=list)
    runs_completed: list[tuple[Any, ...]] = field(default_factory=list)
    snapshots: list[tuple[Any, ...]] = field(default_factory=list)
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    trades: list[tuple[Any, ...]] = field(default_factory=list)
    activity: list[tuple[Any, ...]] = field(default_factory=list)
    # Runs whose completion named legs of unknown outcome, or whose such legs were just reported:
    # the figures of each completed run take in the legs found since (``store.SETTLE_UNKNOWN_LEGS``).
    unknown_legs: list[str] = field(default_factory=list)

    def add(self, event: RunStage) -> None:
        if isinstance(event, RebalanceDue):
            self._due(event)
        elif isinstance(event, (ValuedView, PortfolioValued)):
            self._valued(event)
        elif isinstance(event, (PlanView, PlanCreated)):
            self._plan(event)
        elif isinstance(event, OrderEvent):
            self._order(event, event, ORDER_OUTCOMES.get(type(event), "submitted"), event.message_id, event.occurred_at)
        elif isinstance(event, OrdersReported):
            # Each leg as its own order event would be written, without building those events.
            for order in event.orders:
                self._order(event, order, order.outcome, order.event_id, order.occurred_at)
            if event.reconciled:
                self.unknown_legs.append(event.run_id)
        elif isinstance(event, RebalanceCompleted):
            self._completed(event)

    def _run_key(self, e: RunStage) -> tuple[Any, ...]:
        return (e.run_id, e.portfolio_id, e.user_id, e.triggered_by, e.started_at)

    def _log(
        self,
        e: RunStage,
        event_type: str,
        description: str,
        details: dict[str, Any] | None = None,
        *,
        said: tuple[str, datetime] | None = None,
    ) -> None:
        """An activity row keyed by the event's id (``said``: the id and time of a leg's event
        reported inside ``e``)."""
        message_id, occurred_at = said or (e.message_id, e.occurred_at)
        self.activity.append(
            (message_id, e.user_id, e.portfolio_id, e.run_id, event_type, description, details or {}, occurred_at)
        )

    def _due(self, e: RebalanceDue) -> None:
        s = e.strategy
        self.runs_started.append(
            (*self._run_key(e), s.name, s.dry_run, s.quote_currency, s.exchange_id, _json(s))
        )
        mode = " (dry run)" if s.dry_run else ""
        self._log(e, "rebalance_triggered", f"Rebalancing portfolio: {s.name}{mode}, triggered by {e.triggered_by}")

    def _valued(self, e: ValuedView | PortfolioValued) -> None:
        quote = e.strategy.quote_currency
        self.runs_valued.append((*self._run_key(e), e.total_value))
        self.snapshots.append(
            (
                e.run_id,
                e.portfolio_id,
                e.user_id,
                "before",
                {h.asset: str(h.total) for h in e.holdings},
                {k: str(v) for k, v in e.prices.items()},
                e.total_value,
                quote,
                e.occurred_at,
            )
        )
        self._log(e, "portfolio_valued", f"Portfolio value calculated: {money(e.total_value, quote)}")

    def _plan(self, e: PlanView | PlanCreated) -> None:
        planned = len(e.orders) if e.decision == "rebalance" else 0
        self.runs_planned.append(
            (
                *self._run_key(e),
                e.decision,
                e.reason,
                _json(e.drift),
                _json(e.left_out),
                _json(e.orders),
                planned,
                e.portfolio_value,
            )
        )
        text = f"No rebalance needed: {e.reason}" if e.decision == "skip" else f"Generated {planned} rebalance orders"
        details = {"left_out": [leg.reason for leg in e.left_out]} if e.left_out else {}
        self._log(e, "plan_created", text, details)

    def _order(
        self, run: RunStage, e: OrderFacts, outcome: OrderOutcome, message_id: str, occurred_at: datetime
    ) -> None:
        """One leg's rows, from its facts as its order event (``outcome``, ``message_id``,
        ``occurred_at``) says them."""
        f = e.fill
        status = {
            "filled": "filled" if f.filled >= e.amount else "partially_filled",
            "rejected": "rejected" if f.status != "canceled" else "canceled",
            "failed": "abandoned" if e.error is not None and e.error.code == LEG_ABANDONED else "failed",
        }.get(outcome, "submitted")
        error = e.error.model_dump(mode="json") if e.error else None
        self.orders.append(
            (
                e.client_order_id,
                run.run_id,
                run.portfolio_id,
                run.user_id,
                e.leg,
                e.exchange_id,
                e.symbol,
                e.side,
                e.order_type,
                e.amount,
                status,
                f.filled,
                f.average_price,
                f.cost,
                f.fee,
                f.fee_currency,
                f.exchange_order_id,
                e.dry_run,
                error,
                f.fee_known,
            )
        )
        base, _, quote = e.symbol.partition("/")
        if outcome == "filled" and f.filled > 0:
            self.trades.append(
                (
                    e.client_order_id,
                    run.run_id,
                    run.portfolio_id,
                    run.user_id,
                    e.exchange_id,
                    e.symbol,
                    base,
                    quote,
                    e.side,
                    f.filled,
                    f.average_price or Decimal(0),
                    f.value,
                    f.fee,
                    f.fee_currency,
                    f.exchange_order_id,
                    e.dry_run,
                    occurred_at,
                    f.fee_known,
                )
            )
            # No activity row: the activity feed reads a fill from its trade row (migration 008).
        elif error:
            self._log(
                run,
                f"order_{status}",
                f"Order {status}: {e.side} {e.amount} {base}: {e.error.message if e.error else ''}",
                said=(message_id, occurred_at),
            )

    def _completed(self, e: RebalanceCompleted) -> None:
        if any(error.code == OUTCOME_UNKNOWN for error in e.errors):
            self.unknown_legs.append(e.run_id)
        duration_ms = max(int((e.completed_at - e.started_at).total_seconds() * 1000), 0)
        self.runs_completed.append(
            (
                *self._run_key(e),
                e.status,
                e.success,
                e.dry_run,
                e.completed_at,
                duration_ms,
                e.portfolio_value,
                e.value_after,
                e.orders_planned,
                e.orders_executed,
                e.orders_failed,
                e.total_value_traded,
                e.fees,
                _json(e.errors),
                e.reason,
            )
        )
        if e.holdings_after:
            self.snapshots.append(
                (
                    e.run_id,
                    e.portfolio_id,
                    e.user_id,
                    "after",
                    {h.asset: str(h.total) for h in e.holdings_after},
                    {},
                    e.value_after or Decimal(0),
                    e.quote_currency or "USD",
                    e.completed_at,
                )
            )
        self._log(
            e,
            f"rebalance_{e.status}",
            describe_completion(e),
            {"errors": _dump(e.errors)} if e.errors else None,
        )


def describe_completion(e: RebalanceCompleted, name: str = "") -> str:
    """The seed's summary line: ✓ Portfolio rebalanced successfully: My Portfolio (4 orders, ...)."""
    duration_ms = max(int((e.completed_at - e.started_at).total_seconds() * 1000), 0)
    return describe_run(
        e.status, e.dry_run, e.orders_executed, e.total_value_traded, e.quote_currency or "USD", duration_ms,
        e.reason, name,
    )


def describe_run(
    status: str,
    dry_run: bool,
    orders_executed: int,
    traded: Decimal,
    quote: str,
    duration_ms: int,
    reason: str,
    name: str = "",
) -> str:
    """A completed run's summary line, from its event or, once legs found late joined its figures
    (``store.SETTLE_UNKNOWN_LEGS``), from its row."""
    label = f": {name}" if name else ""
    if status == "skipped":
        return f"Rebalance skipped{label}: {reason}"
    figures = f"{orders_executed} orders, {money(traded, quote)} traded, {duration_ms}ms"
    if status == "succeeded":
        dry = " (dry run)" if dry_run else ""
        return f"✓ Portfolio rebalanced successfully{dry}{label} ({figures})"
    return f"✗ Portfolio rebalance {status}{label} ({figures}): {reason}"
