"""Across all the user's portfolios: runs, orders, trades (with the CSV export for tax) and
statistics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from services.api.auth import Principal, current_principal
from services.api.context import ApiContext, get_context
from services.api.csv_export import trades_csv
from services.api.errors import ERROR_RESPONSES
from services.api.repositories import history
from services.api.repositories.history import Filters
from services.api.routers.queries import history_filters, order_filters
from services.api.schemas import OrderOut, OrderPage, RunOut, RunPage, StatsOut, TradeOut, TradePage

router = APIRouter(prefix="/api/v1", tags=["history"], responses=ERROR_RESPONSES)


@router.get("/history", response_model=RunPage)
async def all_runs(
    filters: Filters = Depends(history_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> RunPage:
    async with ctx.tx(who.user_id) as conn:
        rows, total = await history.runs(conn, filters)
    return RunPage(
        runs=[RunOut.model_validate(r) for r in rows], total=total, limit=filters.limit, offset=filters.offset
    )


@router.get("/orders", response_model=OrderPage)
async def all_orders(
    filters: Filters = Depends(order_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> OrderPage:
    """Every order, filled or not (``status=failed`` lists what went wrong, with each error)."""
    async with ctx.tx(who.user_id) as conn:
        rows, total = await history.orders(conn, filters)
    return OrderPage(
        orders=[OrderOut.model_validate(r) for r in rows], total=total, limit=filters.limit, offset=filters.offset
    )


@router.get("/trades", response_model=TradePage)
async def all_trades(
    filters: Filters = Depends(history_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> TradePage:
    async with ctx.tx(who.user_id) as conn:
        rows, total = await history.trades(conn, filters)
    return TradePage(
        trades=[TradeOut.model_validate(r) for r in rows], total=total, limit=filters.limit, offset=filters.offset
    )


@router.get(
    "/trades/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def export_trades(
    filters: Filters = Depends(history_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> Response:
    """Every matching trade as CSV, oldest first (pagination ignored)."""
    async with ctx.tx(who.user_id) as conn:
        rows = await history.all_trades(conn, filters)
    return Response(
        trades_csv(rows),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="trades.csv"'},
    )


@router.get("/stats", response_model=StatsOut)
async def stats(
    filters: Filters = Depends(history_filters),
    who: Principal = Depends(current_principal),
    ctx: ApiContext = Depends(get_context),
) -> StatsOut:
    async with ctx.tx(who.user_id) as conn:
        result = await history.stats(conn, filters)
    return StatsOut(
        runs=result.runs,
        successful_runs=result.successful_runs,
        failed_runs=result.failed_runs,
        success_rate=result.success_rate,
        total_value_traded=result.total_value_traded,
        average_portfolio_value=result.average_portfolio_value,
        fees=result.fees,
        trades=result.trades,
    )
