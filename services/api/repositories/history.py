"""History reads (the ledger writes these tables): runs, orders, trades, snapshots, activity,
aggregates.

The seed's history queries map onto one filtered, paginated query per table: the last 10 runs of
a portfolio (``portfolio_id``, ``limit=10``), successful runs (``success=True``), runs in a date
range (``date_from``/``date_to``), and the aggregate (``stats``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class Filters:
    portfolio_id: UUID | None = None
    date_from: datetime | None = None  # inclusive
    date_to: datetime | None = None  # exclusive
    success: bool | None = None
    triggered_by: str | None = None
    dry_run: bool | None = None
    side: str | None = None
    asset: str | None = None
    event_type: str | None = None
    status: str | None = None  # an order's
    run_id: UUID | None = None
    limit: int = 50
    offset: int = 0


def where_clause(filters: Filters, time_column: str, allowed: frozenset[str]) -> tuple[str, list[Any]]:
    """``WHERE ...`` over the filters the table supports (``allowed``), with positional params."""
    conditions: list[str] = []
    params: list[Any] = []

    def add(sql: str, value: Any) -> None:
        params.append(value)
        conditions.append(sql.replace("?", f"${len(params)}"))

    if filters.portfolio_id is not None:
        add("portfolio_id = ?", filters.portfolio_id)
    if filters.date_from is not None:
        add(f"{time_column} >= ?", filters.date_from)
    if filters.date_to is not None:
        add(f"{time_column} < ?", filters.date_to)
    if "success" in allowed and filters.success is not None:
        add("success = ?", filters.success)
    if "triggered_by" in allowed and filters.triggered_by is not None:
        add("triggered_by = ?", filters.triggered_by)
    if "dry_run" in allowed and filters.dry_run is not None:
        add("dry_run = ?", filters.dry_run)
    if "side" in allowed and filters.side is not None:
        add("side = ?", filters.side)
    if "asset" in allowed and filters.asset is not None:
        add("asset = ?", filters.asset)
    if "event_type" in allowed and filters.event_type is not None:
        add("event_type = ?", filters.event_type)
    if "status" in allowed and filters.status is not None:
        add("status = ?", filters.status)
    if "run_id" in allowed and filters.run_id is not None:
        add("run_id = ?", filters.run_id)
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", params


async def _page(
    conn: asyncpg.Connection,
    table: str,
    columns: str,
    time_column: str,
    allowed: frozenset[str],
    filters: Filters,
    *,
    tie_break: str = "id DESC",
) -> tuple[list[dict[str, Any]], int]:
    """Newest first; ``tie_break`` orders rows of the same time (unique, so pages never overlap)."""
    where, params = where_clause(filters, time_column, allowed)
    total: int = await conn.fetchval(f"SELECT count(*) FROM {table}{where}", *params)
    n = len(params)
    rows = await conn.fetch(
        f"SELECT {columns} FROM {table}{where} ORDER BY {time_column} DESC, {tie_break}"
        f" LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        filters.limit,
        filters.offset,
    )
    return [dict(r) for r in rows], total


RUN_COLUMNS = (
    "id, portfolio_id, portfolio_name, executed_at, started_at, success, dry_run, portfolio_value,"
    " value_after, orders_planned, orders_executed, orders_failed, total_value_traded, orders, errors,"
    " triggered_by, duration_ms AS duration, status, decision, reason, drift, left_out, fees,"
    " quote_currency, exchange_id"
)
ORDER_COLUMNS = (
    "client_order_id, run_id, portfolio_id, leg, created_at, updated_at, exchange_id, symbol, side,"
    " order_type, amount, status, filled, average_price, cost, fee, fee_currency, fee_known,"
    " exchange_order_id, dry_run, error"
)
TRADE_COLUMNS = (
    "id, run_id, portfolio_id, executed_at, exchange_id, symbol, asset, quote, side, quantity, price,"
    " value, fee, fee_currency, fee_known, exchange_order_id, client_order_id, dry_run"
)
SNAPSHOT_COLUMNS = (
    "id, run_id, portfolio_id, kind, holdings, prices, total_value, quote_currency, taken_at"
)
ACTIVITY_COLUMNS = "id, portfolio_id, run_id, event_type, description, details, created_at"


async def runs(conn: asyncpg.Connection, filters: Filters) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn, "rebalance_runs", RUN_COLUMNS, "executed_at",
        frozenset({"success", "triggered_by", "dry_run"}), filters,
    )


async def orders(conn: asyncpg.Connection, filters: Filters) -> tuple[list[dict[str, Any]], int]:
    """Every order the executor reported, whatever became of it (filled, failed, rejected, ...),
    with its error; a run's legs in leg order."""
    return await _page(
        conn, "orders", ORDER_COLUMNS, "created_at", frozenset({"dry_run", "side", "status", "run_id"}), filters,
        tie_break="run_id DESC, leg",
    )


async def trades(conn: asyncpg.Connection, filters: Filters) -> tuple[list[dict[str, Any]], int]:
    return await _page(
        conn, "trades", TRADE_COLUMNS, "executed_at", frozenset({"dry_run", "side", "asset"}), filters
    )


async def snapshots(conn: asyncpg.Connection, filters: Filters) -> tuple[list[dict[str, Any]], int]:
    return await _page(conn, "portfolio_snapshots", SNAPSHOT_COLUMNS, "taken_at", frozenset(), filters)


async def activity(conn: asyncpg.Connection, filters: Filters) -> tuple[list[dict[str, Any]], int]:
    """The activity feed: the activity log's entries and one per trade (``activity_feed``, migration
    008), newest first."""
    return await _page(
        conn, "activity_feed", ACTIVITY_COLUMNS, "created_at", frozenset({"event_type"}), filters
    )


@dataclass(frozen=True)
class Stats:
    runs: int
    successful_runs: int
    failed_runs: int
    success_rate: Decimal | None
    total_value_traded: Decimal
    average_portfolio_value: Decimal | None
    fees: Decimal
    trades: int


async def stats(conn: asyncpg.Connection, filters: Filters) -> Stats:
    """The seed's aggregate (sum traded, average value, count) plus success rate and fees, over
    finished runs (a run still in progress has no outcome yet)."""
    where, params = where_clause(filters, "executed_at", frozenset({"triggered_by", "dry_run"}))
    finished = f"{where} {'AND' if where else 'WHERE'} status <> 'running'"
    row = await conn.fetchrow(
        "SELECT count(*) AS runs, count(*) FILTER (WHERE success) AS ok,"
        " count(*) FILTER (WHERE NOT success) AS failed,"
        " COALESCE(sum(total_value_traded), 0) AS traded, avg(portfolio_value) AS average_value,"
        f" COALESCE(sum(fees), 0) AS fees FROM rebalance_runs{finished}",
        *params,
    )
    trade_where, trade_params = where_clause(filters, "executed_at", frozenset({"dry_run"}))
    trade_count: int = await conn.fetchval(f"SELECT count(*) FROM trades{trade_where}", *trade_params)
    assert row is not None
    runs_count: int = row["runs"]
    rate = (Decimal(row["ok"]) * 100 / runs_count).quantize(Decimal("0.01")) if runs_count else None
    average = row["average_value"]
    return Stats(
        runs=runs_count,
        successful_runs=row["ok"],
        failed_runs=row["failed"],
        success_rate=rate,
        total_value_traded=row["traded"],
        average_portfolio_value=average.quantize(Decimal("0.01")) if average is not None else None,
        fees=row["fees"],
        trades=trade_count,
    )


async def all_trades(conn: asyncpg.Connection, filters: Filters) -> list[dict[str, Any]]:
    """Every matching trade, oldest first (for the tax export; no pagination)."""
    where, params = where_clause(filters, "executed_at", frozenset({"dry_run", "side", "asset"}))
    rows = await conn.fetch(
        f"SELECT {TRADE_COLUMNS} FROM trades{where} ORDER BY executed_at, id", *params
    )
    return [dict(r) for r in rows]
