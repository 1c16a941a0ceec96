"""``/api/v1/portfolios``: resources, their history, a manual trigger and the dry-run preview."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Response

from services.api import operations, preview
from services.api.auth import Principal, current_principal
from services.api.context import ApiContext, get_context
from services.api.errors import ERROR_RESPONSES
from services.api.repositories import history
from services.api.repositories.history import Filters
from services.api.routers.queries import history_filters, order_filters
from services.api.schemas import (
    ActivityOut,
    ActivityPage,
    ErrorBody,
    OrderOut,
    OrderPage,
    PortfolioCreate,
    PortfolioFields,
    PortfolioOut,
    PreviewOut,
    RunOut,
    RunPage,
    SnapshotOut,
    SnapshotPage,
    TradeOut,
    TradePage,
    TriggerAccepted,
    TriggerV1Body,
)

router = APIRouter(prefix="/api/v1/portfolios", tags=["portfolios"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[PortfolioOut])
async def list_portfolios(
    who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> list[PortfolioOut]:
    return [PortfolioOut.model_validate(r) for r in await operations.list_portfolios(ctx, who)]


@router.post("", response_model=PortfolioOut, status_code=201)
async def create_portfolio(
    body: PortfolioCreate,
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> PortfolioOut:
    return PortfolioOut.model_validate(await operations.create_portfolio(ctx, who, body))


@router.get("/{portfolio_id}", response_model=PortfolioOut)
async def get_portfolio(
    portfolio_id: UUID, who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> PortfolioOut:
    return PortfolioOut.model_validate(await operations.get_portfolio(ctx, who, portfolio_id))


@router.patch("/{portfolio_id}", response_model=PortfolioOut)
@router.put("/{portfolio_id}", response_model=PortfolioOut)
async def update_portfolio(
    portfolio_id: UUID,
    body: PortfolioFields,
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> PortfolioOut:
    return PortfolioOut.model_validate(await operations.update_portfolio(ctx, who, portfolio_id, body))


@router.delete(
    "/{portfolio_id}", status_code=204, responses={409: {"model": ErrorBody}}, response_class=Response
)
async def delete_portfolio(
    portfolio_id: UUID, who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> Response:
    await operations.delete_portfolio(ctx, who, portfolio_id)
    return Response(status_code=204)


@router.post(
    "/{portfolio_id}/trigger",
    response_model=TriggerAccepted,
    status_code=202,
    responses={409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def trigger(
    portfolio_id: UUID,
    body: TriggerV1Body | None = None,
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> TriggerAccepted:
    message_id = await operations.request_run(ctx, who, portfolio_id, body.dry_run if body else None)
    return TriggerAccepted(message_id=message_id, portfolio_id=portfolio_id)


@router.post(
    "/{portfolio_id}/preview",
    response_model=PreviewOut,
    responses={422: {"model": ErrorBody}, 502: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def preview_plan(
    portfolio_id: UUID, who: Principal = Depends(current_principal), ctx: ApiContext = Depends(get_context)
) -> PreviewOut:
    plan = await preview.preview(ctx, who, portfolio_id)
    return PreviewOut.model_validate(preview.preview_body(plan))


async def _own_portfolio(ctx: ApiContext, who: Principal, portfolio_id: UUID) -> None:
    await operations.get_portfolio(ctx, who, portfolio_id)  # 404 when missing or foreign


def _for(filters: Filters, portfolio_id: UUID) -> Filters:
    return dataclasses.replace(filters, portfolio_id=portfolio_id)


async def _portfolio_rows(
    ctx: ApiContext,
    who: Principal,
    portfolio_id: UUID,
    filters: Filters,
    query: Callable[[asyncpg.Connection, Filters], Awaitable[tuple[list[dict[str, Any]], int]]],
) -> tuple[list[dict[str, Any]], int]:
    """One page of a portfolio's history rows, after checking the portfolio is the caller's."""
    await _own_portfolio(ctx, who, portfolio_id)
    async with ctx.tx(who.user_id) as conn:
        return await query(conn, _for(filters, portfolio_id))


@router.get("/{portfolio_id}/history", response_model=RunPage)
async def portfolio_history(
    portfolio_id: UUID,
    filters: Filters = Depends(history_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> RunPage:
    rows, total = await _portfolio_rows(ctx, who, portfolio_id, filters, history.runs)
    return RunPage(
        runs=[RunOut.model_validate(r) for r in rows], total=total, limit=filters.limit, offset=filters.offset
    )


@router.get("/{portfolio_id}/orders", response_model=OrderPage)
async def portfolio_orders(
    portfolio_id: UUID,
    filters: Filters = Depends(order_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> OrderPage:
    """Every order of the portfolio's runs, filled or not, newest first (``status``, ``runId``,
    ``side``, ``dryRun``, ``from``/``to`` filter them)."""
    rows, total = await _portfolio_rows(ctx, who, portfolio_id, filters, history.orders)
    return OrderPage(
        orders=[OrderOut.model_validate(r) for r in rows], total=total, limit=filters.limit, offset=filters.offset
    )


@router.get("/{portfolio_id}/trades", response_model=TradePage)
async def portfolio_trades(
    portfolio_id: UUID,
    filters: Filters = Depends(history_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> TradePage:
    rows, total = await _portfolio_rows(ctx, who, portfolio_id, filters, history.trades)
    return TradePage(
        trades=[TradeOut.model_validate(r) for r in rows], total=total, limit=filters.limit, offset=filters.offset
    )


@router.get("/{portfolio_id}/snapshots", response_model=SnapshotPage)
async def portfolio_snapshots(
    portfolio_id: UUID,
    filters: Filters = Depends(history_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> SnapshotPage:
    rows, total = await _portfolio_rows(ctx, who, portfolio_id, filters, history.snapshots)
    return SnapshotPage(
        snapshots=[SnapshotOut.model_validate(r) for r in rows],
        total=total,
        limit=filters.limit,
        offset=filters.offset,
    )


@router.get("/{portfolio_id}/activity", response_model=ActivityPage)
async def portfolio_activity(
    portfolio_id: UUID,
    filters: Filters = Depends(history_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> ActivityPage:
    rows, total = await _portfolio_rows(ctx, who, portfolio_id, filters, history.activity)
    return ActivityPage(
        activity=[ActivityOut.model_validate(r) for r in rows],
        total=total,
        limit=filters.limit,
        offset=filters.offset,
    )
