"""Exchange connections through the api role: credentials go in, never come back out."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

ONE_CONNECTION_PER_ACCOUNT = "exchange_connections_one_per_account"  # migration 011's unique index
ONE_CONNECTION_PER_EXCHANGE_ACCOUNT = "exchange_connections_one_per_exchange_account"  # migration 014's
ONE_CONNECTION_PER_ACCOUNT_INDEXES = frozenset({ONE_CONNECTION_PER_ACCOUNT, ONE_CONNECTION_PER_EXCHANGE_ACCOUNT})

_PUBLIC_COLUMNS = (
    "id, exchange_id, label, api_key_hint, api_url, sandbox, paper_account, created_at, updated_at,"
    " same_account_as IS NOT NULL AS shares_account"
)


async def list_connections(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {_PUBLIC_COLUMNS} FROM exchange_connections ORDER BY created_at, id")
    return [dict(r) for r in rows]


async def get_connection(conn: asyncpg.Connection, connection_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_PUBLIC_COLUMNS} FROM exchange_connections WHERE id = $1", connection_id
    )
    return dict(row) if row else None


async def insert_connection(
    conn: asyncpg.Connection,
    *,
    user_id: UUID,
    exchange_id: str,
    label: str,
    credentials_enc: bytes | None,
    key_version: str | None,
    api_key_hint: str,
    api_url: str | None,
    sandbox: bool,
    paper_account: str | None,
    account_ref: str,
    account_uid_ref: str | None = None,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        "INSERT INTO exchange_connections (user_id, exchange_id, label, credentials_enc, key_version,"
        " api_key_hint, api_url, sandbox, paper_account, account_ref, account_uid_ref)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        f" RETURNING {_PUBLIC_COLUMNS}",
        user_id,
        exchange_id,
        label,
        credentials_enc,
        key_version,
        api_key_hint,
        api_url,
        sandbox,
        paper_account,
        account_ref,
        account_uid_ref,
    )
    assert row is not None
    return dict(row)


async def key_fields(conn: asyncpg.Connection, connection_id: UUID) -> dict[str, Any] | None:
    """What replacing a connection's key is checked against (the caller's connections only)."""
    row = await conn.fetchrow(
        "SELECT exchange_id, api_url, sandbox, paper_account, account_uid_ref FROM exchange_connections"
        " WHERE id = $1",
        connection_id,
    )
    return dict(row) if row else None


async def replace_key(
    conn: asyncpg.Connection,
    connection_id: UUID,
    *,
    credentials_enc: bytes,
    key_version: str,
    api_key_hint: str,
    account_ref: str,
    account_uid_ref: str | None,
) -> dict[str, Any]:
    """The new key, sealed; the account's id stays as it was where the check learned none."""
    row = await conn.fetchrow(
        "UPDATE exchange_connections SET credentials_enc = $2, key_version = $3, api_key_hint = $4,"
        " account_ref = $5, account_uid_ref = COALESCE($6, account_uid_ref), updated_at = now()"
        f" WHERE id = $1 RETURNING {_PUBLIC_COLUMNS}",
        connection_id,
        credentials_enc,
        key_version,
        api_key_hint,
        account_ref,
        account_uid_ref,
    )
    assert row is not None
    return dict(row)


async def connection_to_account(
    conn: asyncpg.Connection, account_ref: str, account_uid_ref: str | None = None
) -> dict[str, Any] | None:
    """The caller's connection to this exchange account, by its key or by the exchange's own id of
    it, if any (other users' rows are not visible)."""
    row = await conn.fetchrow(
        "SELECT id, label, account_ref FROM exchange_connections WHERE account_ref = $1 OR account_uid_ref = $2"
        " ORDER BY account_ref = $1 DESC LIMIT 1",
        account_ref,
        account_uid_ref,
    )
    return dict(row) if row else None


async def connection_in_use(conn: asyncpg.Connection, connection_id: UUID) -> bool:
    used: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM portfolios WHERE connection_id = $1)", connection_id
    )
    return used


async def unresolved_orders(conn: asyncpg.Connection, connection_id: UUID) -> list[dict[str, Any]]:
    """Orders on this connection whose outcome the executor's reconciler is still looking up, with
    their run's status as the history has it (None until it records the run)."""
    rows = await conn.fetch(
        "SELECT o.client_order_id, o.run_id, o.symbol, o.side, o.state, r.status AS run_status"
        " FROM connection_unresolved_orders($1) o LEFT JOIN rebalance_runs r ON r.id = o.run_id",
        connection_id,
    )
    return [dict(r) for r in rows]


async def delete_connection(conn: asyncpg.Connection, connection_id: UUID) -> bool:
    deleted = await conn.fetchval("DELETE FROM exchange_connections WHERE id = $1 RETURNING id", connection_id)
    return deleted is not None
