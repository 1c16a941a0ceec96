"""The seed's REST contract, kept as written: ``/api/portfolios/manage``, ``/api/scheduler``,
``/api/scheduler/trigger`` (``id`` in the body or the query, camelCase, ``{"success": true, ...}``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query

from services.api import operations
from services.api.auth import Principal, admin_principal, current_principal
from services.api.context import ApiContext, get_context
from services.api.errors import ERROR_RESPONSES, invalid
from services.api.schemas import (
    Deleted,
    ErrorBody,
    IdBody,
    PortfolioCreate,
    PortfolioEnvelope,
    PortfolioListEnvelope,
    PortfolioOut,
    PortfolioUpdate,
    SchedulerCommand,
    SchedulerCommandAccepted,
    SchedulerEnvelope,
    TriggerAccepted,
    TriggerBody,
)

router = APIRouter(prefix="/api", tags=["seed contract"], responses=ERROR_RESPONSES)
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "a rebalance is in progress"}
}
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "the message bus is unavailable"}
}


def _one(row: dict[str, Any]) -> PortfolioEnvelope:
    return PortfolioEnvelope(portfolio=PortfolioOut.model_validate(row))


@router.get("/portfolios/manage", response_model=PortfolioListEnvelope | PortfolioEnvelope)
async def list_or_get(
    id: UUID | None = Query(None, description="one portfolio instead of the list"),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> PortfolioListEnvelope | PortfolioEnvelope:
    if id is not None:
        return _one(await operations.get_portfolio(ctx, who, id))
    rows = await operations.list_portfolios(ctx, who)
    return PortfolioListEnvelope(portfolios=[PortfolioOut.model_validate(r) for r in rows])


@router.post("/portfolios/manage", response_model=PortfolioEnvelope, status_code=201)
async def create(
    body: PortfolioCreate,
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> PortfolioEnvelope:
    return _one(await operations.create_portfolio(ctx, who, body))


@router.put("/portfolios/manage", response_model=PortfolioEnvelope)
async def update(
    body: PortfolioUpdate,
    id: UUID | None = Query(None),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> PortfolioEnvelope:
    portfolio_id = body.id or id
    if portfolio_id is None:
        raise invalid([("id", "give the portfolio id in the body or the query")])
    return _one(await operations.update_portfolio(ctx, who, portfolio_id, body))


@router.delete("/portfolios/manage", response_model=Deleted, responses=_CONFLICT)
async def delete(
    id: UUID | None = Query(None),
    body: IdBody | None = Body(None),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> Deleted:
    portfolio_id = id or (body.id if body else None)
    if portfolio_id is None:
        raise invalid([("id", "give the portfolio id in the query or the body")])
    await operations.delete_portfolio(ctx, who, portfolio_id)
    return Deleted(deleted=portfolio_id)


@router.get("/scheduler", response_model=SchedulerEnvelope)
async def scheduler_status(
    who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> SchedulerEnvelope:
    return SchedulerEnvelope.model_validate(await operations.scheduler_status(ctx, who))


@router.post(
    "/scheduler",
    response_model=SchedulerCommandAccepted,
    status_code=202,
    responses={403: {"model": ErrorBody, "description": "needs the admin scope"}, **_UNAVAILABLE},
)
async def scheduler_control(
    command: SchedulerCommand,
    _: Principal = Depends(admin_principal),
    ctx: ApiContext = Depends(get_context),
) -> SchedulerCommandAccepted:
    message_id = await operations.control_scheduler(ctx, command)
    return SchedulerCommandAccepted(action=command.action, message_id=message_id)


@router.post(
    "/scheduler/trigger",
    response_model=TriggerAccepted,
    status_code=202,
    responses={**_CONFLICT, **_UNAVAILABLE},
)
async def trigger(
    body: TriggerBody,
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> TriggerAccepted:
    message_id = await operations.request_run(ctx, who, body.portfolio_id, body.dry_run)
    return TriggerAccepted(message_id=message_id, portfolio_id=body.portfolio_id)
