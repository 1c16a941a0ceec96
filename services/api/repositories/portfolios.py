"""Portfolios as the api role sees them (RLS limits every query to the request's user)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from services.common.live_portfolios import first_live_beside

_COLUMNS = (
    "id, user_id, connection_id, name, target_weights, quote_currency, rebalance_enabled,"
    " rebalance_interval, cron, timezone, rebalance_threshold, threshold_kind, rebalance_mode,"
    " always_rebalance, max_orders_per_rebalance, dry_run, leave_alone, cash_reserve, order_type,"
    " limit_timeout_seconds, created_at, updated_at, last_rebalanced_at, next_rebalance_at,"
    " active_run_id,"
    # A live portfolio made after another on its connection (before the API kept an account to one
    # live portfolio): the first keeps the account, and the scheduler fails this one's live runs.
    f" CASE WHEN NOT p.dry_run THEN (SELECT o.id {first_live_beside()}) END AS account_kept_by"
)
_WRITABLE = (
    "connection_id", "name", "target_weights", "quote_currency", "rebalance_enabled",
    "rebalance_interval", "cron", "timezone", "rebalance_threshold", "threshold_kind",
    "rebalance_mode", "always_rebalance", "max_orders_per_rebalance", "dry_run", "leave_alone",
    "cash_reserve", "order_type", "limit_timeout_seconds",
)


def _weights_json(weights: dict[str, Decimal]) -> str:
    return json.dumps({asset: format(Decimal(w), "f") for asset, w in weights.items()})


def row_dict(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    weights = out["target_weights"]
    if isinstance(weights, str):  # a connection without the JSON codec
        weights = json.loads(weights)
    out["target_weights"] = {a: Decimal(str(w)) for a, w in weights.items()}
    out["leave_alone"] = list(out["leave_alone"] or [])
    return out


async def list_portfolios(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM portfolios p ORDER BY created_at, id")
    return [row_dict(r) for r in rows]


async def get_portfolio(conn: asyncpg.Connection, portfolio_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM portfolios p WHERE id = $1{suffix}", portfolio_id)
    return row_dict(row) if row else None


def _params(values: dict[str, Any]) -> list[Any]:
    params: list[Any] = []
    for column in _WRITABLE:
        value = values[column]
        if column == "target_weights":
            value = _weights_json(value)
        params.append(value)
    return params


async def insert_portfolio(conn: asyncpg.Connection, user_id: UUID, values: dict[str, Any]) -> dict[str, Any]:
    """Stored with ``next_rebalance_at`` NULL: the scheduler computes the first due time."""
    columns = ", ".join(_WRITABLE)
    placeholders = ", ".join(
        f"${i}::text::jsonb" if c == "target_weights" else f"${i}" for i, c in enumerate(_WRITABLE, start=2)
    )
    row = await conn.fetchrow(
        f"INSERT INTO portfolios AS p (user_id, next_rebalance_at, {columns}) VALUES ($1, NULL, {placeholders})"
        f" RETURNING {_COLUMNS}",
        user_id,
        *_params(values),
    )
    assert row is not None
    return row_dict(row)


async def update_portfolio(
    conn: asyncpg.Connection,
    portfolio_id: UUID,
    values: dict[str, Any],
) -> dict[str, Any] | None:
    assignments = ", ".join(
        f"{c} = ${i}::text::jsonb" if c == "target_weights" else f"{c} = ${i}"
        for i, c in enumerate(_WRITABLE, start=2)
    )
    row = await conn.fetchrow(
        f"UPDATE portfolios AS p SET {assignments}, updated_at = now()"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        portfolio_id,
        *_params(values),
    )
    return row_dict(row) if row else None


async def delete_portfolio(conn: asyncpg.Connection, portfolio_id: UUID) -> bool:
    deleted = await conn.fetchval("DELETE FROM portfolios WHERE id = $1 RETURNING id", portfolio_id)
    return deleted is not None


async def connection_for_portfolio(conn: asyncpg.Connection, connection_id: UUID | None) -> UUID | None:
    """The given connection when the user owns it; without one, the user's first connection."""
    if connection_id is not None:
        found: UUID | None = await conn.fetchval(
            "SELECT id FROM exchange_connections WHERE id = $1", connection_id
        )
        return found
    first: UUID | None = await conn.fetchval(
        "SELECT id FROM exchange_connections ORDER BY created_at, id LIMIT 1"
    )
    return first


async def live_portfolio_on(
    conn: asyncpg.Connection, connection_id: UUID, other_than: UUID | None = None
) -> asyncpg.Record | None:
    """Another portfolio trading live (not dry-run) on this connection, if any. The connection's
    row is locked first, so two requests making portfolios live on one account take turns."""
    await conn.execute("SELECT 1 FROM exchange_connections WHERE id = $1 FOR UPDATE", connection_id)
    found: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, name FROM portfolios WHERE connection_id = $1 AND NOT dry_run AND id IS DISTINCT FROM $2"
        " ORDER BY created_at LIMIT 1",
        connection_id,
        other_than,
    )
    return found


async def live_portfolio_before(conn: asyncpg.Connection, portfolio_id: UUID) -> asyncpg.Record | None:
    """The live portfolio made before this one on its connection, if any (two made before the API
    kept an account to one): it keeps the account, and the scheduler fails this one's live runs."""
    found: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT keeper.id, keeper.name FROM portfolios p"
        f" CROSS JOIN LATERAL (SELECT o.id, o.name {first_live_beside()}) keeper WHERE p.id = $1",
        portfolio_id,
    )
    return found


async def live_run_on(conn: asyncpg.Connection, connection_id: UUID, other_than: UUID) -> asyncpg.Record | None:
    """Another portfolio's live run active on this connection, if any."""
    found: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, name, active_run_id FROM portfolios WHERE connection_id = $1 AND id <> $2"
        " AND active_run_id IS NOT NULL AND NOT active_run_dry_run",
        connection_id,
        other_than,
    )
    return found


async def exchange_of(conn: asyncpg.Connection, connection_id: UUID) -> str:
    exchange_id: str = await conn.fetchval(
        "SELECT exchange_id FROM exchange_connections WHERE id = $1", connection_id
    )
    return exchange_id
