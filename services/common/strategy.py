"""The frozen strategy snapshot of a portfolio row: taken by the scheduler when a run is due, and
by the API for a dry-run preview, so both plan from the same reading of a row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from contracts.v1 import Strategy


def strategy_from_row(row: Mapping[str, Any], *, dry_run: bool, exchange_id: str | None = None) -> Strategy:
    """Raises ``ValueError`` (pydantic's) when the row cannot make a valid strategy."""
    weights = row["target_weights"]
    if isinstance(weights, str):
        # Read as text so numbers keep their exact decimal form (json floats would not).
        weights = json.loads(weights, parse_float=Decimal, parse_int=Decimal)
    return Strategy(
        portfolio_id=str(row["id"]),
        user_id=str(row["user_id"]),
        name=row["name"],
        connection_id=str(row["connection_id"]),
        exchange_id=exchange_id if exchange_id is not None else row["exchange_id"],
        target_weights={str(k): Decimal(str(v)) for k, v in weights.items()},
        quote_currency=row["quote_currency"],
        threshold=Decimal(row["rebalance_threshold"]),
        threshold_kind=row["threshold_kind"],
        mode=row["rebalance_mode"],
        max_orders=row["max_orders_per_rebalance"],
        dry_run=dry_run,
        always_rebalance=row["always_rebalance"],
        leave_alone=tuple(row["leave_alone"] or ()),
        cash_reserve=Decimal(row["cash_reserve"]),
        order_type=row["order_type"],
        limit_timeout_seconds=row["limit_timeout_seconds"],
    )
