"""Pure builders: the strategy snapshot, the due event's ids, dry-run rules, the seed's log lines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from contracts.envelope import derived_id
from contracts.v1.messages import RebalanceCompleted
from services.scheduler.report import completion_line, money
from services.scheduler.runs import (
    ClaimedRun,
    account_taken,
    due_event,
    effective_dry_run,
    scheduler_failure,
    strategy_snapshot,
    trigger_of,
)

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)


def row(**overrides):
    base = {
        "id": uuid.uuid4(), "user_id": uuid.uuid4(), "connection_id": uuid.uuid4(), "name": "My Portfolio",
        "exchange_id": "kraken", "target_weights": '{"BTC": "40", "ETH": 30.5, "SOL": 29.5}',
        "quote_currency": "USD", "rebalance_threshold": Decimal("5"), "threshold_kind": "absolute",
        "rebalance_mode": "target", "max_orders_per_rebalance": None, "dry_run": False,
        "always_rebalance": False, "leave_alone": ["DOGE"], "cash_reserve": Decimal("100"),
        "order_type": "market", "limit_timeout_seconds": 60,
    }
    base.update(overrides)
    return base


def claimed(**overrides) -> ClaimedRun:
    return ClaimedRun(run_id=str(uuid.uuid4()), portfolio=row(**overrides), triggered_by="scheduler",
                      dry_run=True, started_at=NOW, due_at=NOW - timedelta(minutes=3))


def test_snapshot_keeps_exact_decimals_and_the_exchange():
    s = strategy_snapshot(row(), dry_run=False)
    assert s.target_weights == {"BTC": Decimal("40"), "ETH": Decimal("30.5"), "SOL": Decimal("29.5")}
    assert s.exchange_id == "kraken" and s.leave_alone == ("DOGE",) and s.cash_reserve == Decimal("100")


def test_snapshot_refuses_an_unusable_row():
    with pytest.raises(ValidationError):
        strategy_snapshot(row(threshold_kind="sideways"), dry_run=False)


def test_due_event_ids_are_the_run_id():
    run = claimed()
    event = due_event(run)
    assert event.message_id == event.correlation_id == event.run_id == run.run_id
    assert event.strategy.dry_run is True and event.due_at == run.due_at and event.started_at == NOW
    assert due_event(run).model_dump_json() == event.model_dump_json()  # re-built identically


def test_scheduler_failure_id_is_derived_from_run_and_code():
    run_id = str(uuid.uuid4())
    def build() -> RebalanceCompleted:
        return scheduler_failure(run_id=run_id, portfolio_id="p", user_id="u", triggered_by="scheduler",
                                 dry_run=False, started_at=NOW, now=NOW + timedelta(hours=1),
                                 code="lease_expired", message="too long")

    event = build()
    assert event.message_id == derived_id(run_id, "lease_expired") == build().message_id
    assert event.status == "failed" and event.errors[0].code == "lease_expired"
    assert event.errors[0].stage == "scheduler"


def test_a_live_run_may_not_trade_an_account_an_older_live_portfolio_keeps():
    first = ["Core", str(uuid.uuid4())]
    def run(*, dry_run: bool, portfolio_dry_run: bool, before: list[str] | None) -> ClaimedRun:
        return ClaimedRun(run_id="r", portfolio=row(dry_run=portfolio_dry_run, live_portfolio_before=before),
                          triggered_by="scheduler", dry_run=dry_run, started_at=NOW, due_at=NOW)

    assert account_taken(run(dry_run=False, portfolio_dry_run=False, before=None)) is None
    assert account_taken(run(dry_run=True, portfolio_dry_run=False, before=first)) is None  # a dry run goes on
    second = account_taken(run(dry_run=False, portfolio_dry_run=False, before=first))
    assert second is not None and f"portfolio 'Core' ({first[1]}) was made first" in second
    assert "make this one a dry run" in second
    by_hand = account_taken(run(dry_run=False, portfolio_dry_run=True, before=first))
    assert by_hand is not None
    assert "this dry-run portfolio's exchange account trades live for portfolio 'Core'" in by_hand


def test_dry_run_mode_only_makes_runs_safer():
    assert effective_dry_run(False, False) is False
    assert effective_dry_run(False, True) is True
    assert effective_dry_run(True, False, requested=False) is False  # request overrides portfolio
    assert effective_dry_run(False, True, requested=False) is True  # but never the forced mode
    assert effective_dry_run(False, False, requested=True) is True


def test_trigger_of():
    assert trigger_of("threshold") == "threshold"
    assert trigger_of("daily") == "scheduler"
    assert trigger_of("daily", "manual") == "manual"


def completed(**kw) -> RebalanceCompleted:
    base = dict(correlation_id="r", run_id="r", portfolio_id="p", user_id="u", triggered_by="scheduler",
                started_at=NOW, completed_at=NOW + timedelta(milliseconds=812), dry_run=False)
    base.update(kw)
    return RebalanceCompleted(**base)


def test_seed_completion_lines():
    ok = completed(status="succeeded", orders_executed=4, total_value_traded=Decimal("9000"))
    assert completion_line(ok, "My Portfolio", "USD") == (
        "[Scheduler] ✓ Portfolio rebalanced successfully: My Portfolio (4 orders, $9,000.00 traded, 812ms)"
    )
    failed = completed(status="failed", reason="exchange unavailable")
    assert completion_line(failed, "My Portfolio", "USD") == (
        "[Scheduler] ✗ Portfolio rebalance failed: My Portfolio (exchange unavailable, 812ms)"
    )
    skipped = completed(status="skipped", reason="drift 1.2pp below threshold 5pp")
    assert "skipped" in completion_line(skipped, "My Portfolio", "USD")
    assert "drift 1.2pp" in completion_line(skipped, "My Portfolio", "USD")
    assert money(Decimal("1234.5"), "EUR") == "1,234.50 EUR"
