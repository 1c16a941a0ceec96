"""The reconciler's report of a leg it resolved: the same ids and facts as the engine's report of
that leg would carry (so the ledger writes one order and one trade whoever reports first), valued
in the portfolio's quote with the run's prices."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from contracts.envelope import derived_id
from services.common.exchanges.port import OrderResult
from services.executor.reconciler import leg_report

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def intent_row(symbol: str = "ETH/USD", **changes: Any) -> dict[str, Any]:
    """A stale intent with its run's fields, as ``intents.stale_unresolved`` reads it."""
    return {
        "client_order_id": "cid-1",
        "run_id": str(uuid.uuid4()),
        "leg": 1,
        "connection_id": str(uuid.uuid4()),
        "portfolio_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "symbol": symbol,
        "side": "buy",
        "amount": Decimal("2"),
        "order_type": "limit",
        "triggered_by": "scheduler",
        "started_at": NOW,
        "quote_currency": "USD",
        "prices": {"BTC": "50000", "ETH": "2500", "USD": "1"},
        **changes,
    }


def found(symbol: str, status: str, filled: str, cost: str) -> OrderResult:
    return OrderResult(
        client_order_id="cid-1",
        exchange_order_id="X-9",
        symbol=symbol,
        side="buy",
        status=status,  # type: ignore[arg-type]
        amount=Decimal("2"),
        filled=Decimal(filled),
        average_price=Decimal(cost) / Decimal(filled) if Decimal(filled) else None,
        cost=Decimal(cost),
        fee=Decimal("0.5"),
        fee_currency="USD",
    )


def test_a_filled_leg_is_reported_as_the_engine_would_report_it() -> None:
    row = intent_row()
    state, report = leg_report(row, found("ETH/USD", "closed", "1.5", "3750"), exchange_id="kraken", now=NOW)
    assert state == "filled"
    [order] = report.orders
    assert report.message_id == derived_id(row["run_id"], "orders", "1:filled")
    assert order.event_id == derived_id(row["run_id"], "order", 1, "filled")
    assert (report.run_id, report.portfolio_id, report.user_id) == (row["run_id"], row["portfolio_id"], row["user_id"])
    assert report.correlation_id == row["run_id"] and report.triggered_by == "scheduler" and report.started_at == NOW
    assert (order.outcome, order.client_order_id, order.symbol, order.side) == ("filled", "cid-1", "ETH/USD", "buy")
    assert order.order_type == "limit" and order.amount == Decimal("2") and not order.dry_run
    assert order.exchange_id == "kraken" and order.error is None
    assert order.fill.filled == Decimal("1.5") and order.fill.cost == Decimal("3750")
    assert order.fill.exchange_order_id == "X-9" and order.fill.value == Decimal("3750")


def test_a_fill_in_another_quote_is_valued_with_the_runs_prices() -> None:
    row = intent_row("ETH/BTC")
    _, report = leg_report(row, found("ETH/BTC", "closed", "2", "0.1"), exchange_id="kraken", now=NOW)
    assert report.orders[0].fill.value == Decimal("5000.0")  # 0.1 BTC at the run's 50,000 USD


def test_a_fill_is_valued_without_a_snapshot_when_its_market_is_in_the_portfolios_quote() -> None:
    row = intent_row(prices=None)
    _, report = leg_report(row, found("ETH/USD", "closed", "1", "2500"), exchange_id="kraken", now=NOW)
    assert report.orders[0].fill.value == Decimal("2500")


def test_an_order_that_ended_unfilled_is_a_rejection_that_says_so() -> None:
    row = intent_row()
    state, report = leg_report(row, found("ETH/USD", "canceled", "0", "0"), exchange_id="kraken", now=NOW)
    assert state == "canceled"
    [order] = report.orders
    assert order.outcome == "rejected" and order.event_id == derived_id(row["run_id"], "order", 1, "canceled")
    assert order.error is not None and order.error.code == "not_filled" and order.error.leg == 1
    assert "ETH/USD order ended canceled unfilled" in order.error.message
    assert order.fill.status == "canceled" and order.fill.filled == 0


def test_an_abandoned_leg_is_reported_as_a_failure_its_code_tells_apart_under_ids_of_its_own() -> None:
    # Its owner gave it up: the ledger records it as abandoned (by the code), and neither its
    # event nor its report may share an id with a report of the leg failing, which the outbox
    # would keep instead.
    row = intent_row()
    state, report = leg_report(
        row, None, exchange_id="kraken", now=NOW, abandoned="the exchange did not answer: key refused"
    )
    assert state == "abandoned"
    [order] = report.orders
    assert order.outcome == "failed" and order.error is not None and order.error.code == "abandoned"
    assert order.error.message.startswith("outcome unknown: abandoned by its owner on 2026-11-22 12:00 UTC")
    assert "key refused" in order.error.message and "cid-1" in order.error.message and "kraken" in order.error.message
    assert order.event_id == derived_id(row["run_id"], "order", 1, "abandoned")
    assert report.message_id == derived_id(row["run_id"], "orders", "1:failed:abandoned")
    _, not_placed = leg_report(row, None, exchange_id="kraken", now=NOW)
    assert not_placed.message_id == derived_id(row["run_id"], "orders", "1:failed") != report.message_id
    assert order.fill.filled == 0 and order.amount == Decimal("2")
