"""Query parameters shared by the history routes: pagination and filters."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import Depends, Query

from services.api.repositories.history import Filters
from services.api.schemas import OrderStatus, TriggeredBy


def history_filters(
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    date_from: datetime | None = Query(None, alias="from", description="inclusive, ISO 8601"),
    date_to: datetime | None = Query(None, alias="to", description="exclusive, ISO 8601"),
    success: bool | None = Query(None),
    triggered_by: TriggeredBy | None = Query(None, alias="triggeredBy"),
    dry_run: bool | None = Query(None, alias="dryRun"),
    side: Literal["buy", "sell"] | None = Query(None),
    asset: str | None = Query(None, max_length=16, pattern=r"^[A-Za-z0-9.\-]{1,16}$"),
    event_type: str | None = Query(None, alias="eventType", max_length=64),
    portfolio_filter: UUID | None = Query(None, alias="portfolioId"),
) -> Filters:
    return Filters(
        portfolio_id=portfolio_filter,
        date_from=date_from,
        date_to=date_to,
        success=success,
        triggered_by=triggered_by,
        dry_run=dry_run,
        side=side,
        asset=asset.upper() if asset else None,
        event_type=event_type,
        limit=limit,
        offset=offset,
    )


def order_filters(
    filters: Filters = Depends(history_filters),
    status: OrderStatus | None = Query(None),
    run_id: UUID | None = Query(None, alias="runId"),
) -> Filters:
    """The history filters plus an order's status and its run."""
    return dataclasses.replace(filters, status=status, run_id=run_id)
