"""The dry-run preview: what the portfolio would trade now, asked of the pricer and the planner
over core-NATS request-reply; nothing is traded and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import nats
from fastapi import HTTPException
from pydantic import ValidationError

from contracts.envelope import new_id
from contracts.v1.messages import PlanCreated, PortfolioValued, RebalanceDue
from contracts.v1.strategy import Strategy
from services.api.auth import Principal
from services.api.context import ApiContext
from services.api.repositories import portfolios as repo
from services.common.strategy import strategy_from_row


def strategy_of(portfolio: Mapping[str, Any], exchange_id: str) -> Strategy:
    """The frozen strategy snapshot of a portfolio row, as the scheduler takes it, in dry-run."""
    return strategy_from_row(portfolio, dry_run=True, exchange_id=exchange_id)


def preview_due(portfolio: Mapping[str, Any], exchange_id: str, now: datetime) -> RebalanceDue:
    run_id = new_id()
    return RebalanceDue(
        correlation_id=run_id,
        run_id=run_id,
        portfolio_id=str(portfolio["id"]),
        user_id=str(portfolio["user_id"]),
        triggered_by="api",
        started_at=now,
        strategy=strategy_of(portfolio, exchange_id),
        due_at=now,
    )


async def _ask(ctx: ApiContext, subject: str, payload: str, who: str) -> bytes:
    try:
        reply = await ctx.bus.broker.request(
            payload, subject, timeout=ctx.settings.api_rpc_timeout_seconds
        )
    except (TimeoutError, nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise HTTPException(503, f"the {who} did not answer the preview request; is it running?") from None
    body: bytes = reply.body
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if error:
        raise HTTPException(422, f"the {who} cannot preview this portfolio: {error}")
    return body


async def preview(ctx: ApiContext, who: Principal, portfolio_id: UUID) -> PlanCreated:
    async with ctx.tx(who.user_id) as conn:
        portfolio = await repo.get_portfolio(conn, portfolio_id)
        if portfolio is None:
            raise HTTPException(404, f"portfolio {portfolio_id} not found")
        exchange_id = await repo.exchange_of(conn, portfolio["connection_id"])
    due = preview_due(portfolio, exchange_id, datetime.now(UTC))
    subjects = ctx.bus.subjects
    try:
        valued_raw = await _ask(ctx, subjects.rpc_value_portfolio, due.model_dump_json(), "pricer")
        valued = PortfolioValued.model_validate_json(valued_raw)
        plan_raw = await _ask(ctx, subjects.rpc_preview_plan, valued.model_dump_json(), "planner")
        return PlanCreated.model_validate_json(plan_raw)
    except ValidationError:
        raise HTTPException(502, "the preview got an answer it could not read") from None


def preview_body(plan: PlanCreated) -> dict[str, Any]:
    dumped = plan.model_dump(mode="json")
    return {
        "portfolio_id": plan.portfolio_id,
        "decision": plan.decision,
        "reason": plan.reason,
        "quote_currency": plan.strategy.quote_currency,
        "portfolio_value": plan.portfolio_value,
        "drift": dumped["drift"],
        "orders": dumped["orders"],
        "left_out": dumped["left_out"],
        "estimated_fees": plan.estimated_fees,
        "turnover": plan.turnover,
        "expected_weights": dumped["expected_weights"],
    }
