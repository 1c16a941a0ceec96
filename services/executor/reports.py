"""What the executor tells the ledger about its legs: pure, shared by the engine (the legs a run
records together) and the reconciler (a leg it resolved after its run stopped looking).

Both build a leg's report the same way, so the ledger writes the same rows whoever reports it
first: a leg's event id names its run, leg and state, and orders and trades are keyed by the
client order id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from contracts.envelope import derived_id
from contracts.v1 import Fill, OrderOutcome, OrdersReported, ReportedOrder, RunError
from contracts.v1.strategy import LEG_ABANDONED

# A leg's final state as the order event reports it (a canceled, unfilled order is a rejection).
OUTCOMES: dict[str, OrderOutcome] = {
    "filled": "filled",
    "rejected": "rejected",
    "canceled": "rejected",
    "failed": "failed",
    "abandoned": "failed",  # the ledger tells it from a failure by its error code (LEG_ABANDONED)
}


def leg_error(leg: int, code: str, message: str) -> RunError:
    """What went wrong with one leg, as the executor reports it."""
    return RunError(stage="executor", code=code, message=message, leg=leg)


def ended(leg: int, symbol: str, status: str, filled: Decimal) -> tuple[str, RunError | None]:
    """The final state of an order the exchange says is no longer open: filled if any of it
    traded (a partial fill is a fill), otherwise canceled, with the error that says so."""
    if filled > 0:
        return "filled", None
    return "canceled", leg_error(leg, "not_filled", f"{symbol} order ended {status} unfilled")


def reported_order(
    run_id: str,
    *,
    leg: int,
    client_order_id: str,
    symbol: str,
    side: Literal["buy", "sell"],
    order_type: Literal["market", "limit"],
    amount: Decimal,
    state: str,
    fill: Fill | None,
    error: RunError | None,
    dry_run: bool,
    exchange_id: str,
    now: datetime,
) -> ReportedOrder:
    """One leg's report (``amount``: what was sent, or planned when nothing was)."""
    return ReportedOrder(
        outcome=OUTCOMES.get(state, "submitted"),
        event_id=derived_id(run_id, "order", leg, state),
        occurred_at=now,
        dry_run=dry_run,
        exchange_id=exchange_id,
        leg=leg,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        amount=amount,
        order_type=order_type,
        **({"fill": fill} if fill is not None else {}),
        error=error,
    )


def orders_reported(
    stage: Mapping[str, Any], orders: Sequence[ReportedOrder], *, reconciled: bool = False
) -> OrdersReported:
    """One message for the legs recorded together (``stage``: the envelope and run fields). Its id
    names exactly those outcomes, so a replay of the same legs re-queues the same message, which
    the outbox keeps once."""
    # An abandoned leg is reported as failed: named apart, its report never shares an id with one
    # saying the leg failed.
    outcomes = ",".join(
        f"{o.leg}:{o.outcome}" + (f":{LEG_ABANDONED}" if o.error and o.error.code == LEG_ABANDONED else "")
        for o in sorted(orders, key=lambda o: o.leg)
    )
    return OrdersReported(
        message_id=derived_id(stage["run_id"], "orders", outcomes), **stage, orders=list(orders), reconciled=reconciled
    )
