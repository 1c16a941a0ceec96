"""Every API query runs as ``rebalancer_api`` with the request's user set, inside one transaction.

``SET LOCAL`` and ``set_config(..., true)`` end with the transaction, so nothing leaks to the next
request that borrows the pooled connection (asyncpg also resets it on release).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg

API_ROLE = "rebalancer_api"


@asynccontextmanager
async def user_transaction(pool: asyncpg.Pool, user_id: UUID | None) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction acting as ``user_id`` (no user: sees no user-owned rows)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {API_ROLE}")
        await conn.execute("SELECT set_config('app.user_id', $1, true)", str(user_id) if user_id else "")
        yield conn
