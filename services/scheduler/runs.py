"""Pure builders of what a claimed run emits: the strategy snapshot, the due event, and the
scheduler's own terminal events (lease expired, unusable strategy)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.envelope import derived_id
from contracts.v1.messages import RebalanceCompleted, RebalanceDue
from contracts.v1.strategy import RunError, Strategy, TriggeredBy
from services.common.strategy import strategy_from_row


@dataclass(frozen=True)
class ClaimedRun:
    """One portfolio claimed for one run: the claim plus the portfolio row it was taken from."""

    run_id: str
    portfolio: Mapping[str, Any]  # the portfolios row (see repository.CLAIM_COLUMNS) + exchange_id
    triggered_by: TriggeredBy
    dry_run: bool
    started_at: datetime
    due_at: datetime

    @property
    def portfolio_id(self) -> str:
        return str(self.portfolio["id"])

    @property
    def user_id(self) -> str:
        return str(self.portfolio["user_id"])

    @property
    def name(self) -> str:
        return str(self.portfolio["name"])


def strategy_snapshot(row: Mapping[str, Any], *, dry_run: bool) -> Strategy:
    """The frozen strategy of a run; raises ``ValueError`` (pydantic's) when the row is unusable."""
    return strategy_from_row(row, dry_run=dry_run)


def due_event(run: ClaimedRun) -> RebalanceDue:
    """The due event; its message id is the run id, so a re-relay is recognised downstream."""
    return RebalanceDue(
        message_id=run.run_id,
        correlation_id=run.run_id,
        occurred_at=run.started_at,
        run_id=run.run_id,
        portfolio_id=run.portfolio_id,
        user_id=run.user_id,
        triggered_by=run.triggered_by,
        started_at=run.started_at,
        strategy=strategy_snapshot(run.portfolio, dry_run=run.dry_run),
        due_at=run.due_at,
    )


SECOND_LIVE_PORTFOLIO = "second_live_portfolio"


def account_taken(run: ClaimedRun) -> str | None:
    """Why a live run may not trade its account, or None: the account belongs to another, older
    live portfolio (the claim's ``live_portfolio_before``), and a portfolio rebalances its whole
    account, so the two would undo each other's trades and pay the fees both ways."""
    other = run.portfolio.get("live_portfolio_before")
    if run.dry_run or not other:
        return None
    name, portfolio_id = other
    if run.portfolio["dry_run"]:
        return (
            f"this dry-run portfolio's exchange account trades live for portfolio {name!r} ({portfolio_id}):"
            " a live run of it would undo that portfolio's allocation; trigger it as a dry run"
        )
    return (
        f"portfolio {name!r} ({portfolio_id}) was made first and trades the same exchange connection live:"
        " each rebalances the whole account, so the two would undo each other's trades; make this one"
        " a dry run or move it to its own account (its dry runs go on)"
    )


def scheduler_failure(
    *,
    run_id: str,
    portfolio_id: str,
    user_id: str,
    triggered_by: TriggeredBy,
    dry_run: bool,
    started_at: datetime,
    now: datetime,
    code: str,
    message: str,
) -> RebalanceCompleted:
    """A run the scheduler itself ends as failed; the id is derived so a retry emits the same event."""
    return RebalanceCompleted(
        message_id=derived_id(run_id, code),
        correlation_id=run_id,
        occurred_at=now,
        run_id=run_id,
        portfolio_id=portfolio_id,
        user_id=user_id,
        triggered_by=triggered_by,
        started_at=started_at,
        status="failed",
        dry_run=dry_run,
        reason=message,
        errors=[RunError(stage="scheduler", code=code, message=message)],
        completed_at=now,
    )


def trigger_of(interval: str, requested: TriggeredBy | None = None) -> TriggeredBy:
    """Who started a run: the request's trigger, else threshold-only or the schedule."""
    if requested is not None:
        return requested
    return "threshold" if interval == "threshold" else "scheduler"


def effective_dry_run(portfolio_dry_run: bool, forced_dry_run: bool, requested: bool | None = None) -> bool:
    """The scheduler's dry-run mode can only make a run safer, never turn dry-run off."""
    chosen = portfolio_dry_run if requested is None else requested
    return chosen or forced_dry_run
