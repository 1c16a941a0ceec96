"""The demo: a user with an API token, a funded paper account and one portfolio to rebalance.

Idempotent: every row is found before it is created, under an advisory lock so two runners
starting at once cannot both create it, and the paper account is funded only while it holds
nothing (a re-run never adds money).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import asyncpg

from services.api.accounts import ADMIN_SCOPE, USER_SCOPE, create_token, ensure_user, generate_token
from services.common.exchanges.paper import fund_account, seed_markets
from services.stack.state import load_or_create_secret

DEMO_EMAIL = "demo@rebalancer.local"
DEMO_NAME = "Demo"
DEMO_PAPER_ACCOUNT = "demo"
DEMO_CONNECTION_LABEL = "Paper exchange (demo)"
DEMO_PORTFOLIO_NAME = "My Portfolio"
DEMO_TARGETS: dict[str, str] = {"BTC": "40", "ETH": "30", "SOL": "20", "ADA": "10"}
DEMO_INTERVAL = "hourly"
DEMO_THRESHOLD = Decimal("10")
# All cash: far from the targets, so the first run places real orders.
DEMO_FUNDING: dict[str, Decimal] = {"USD": Decimal("10000")}
_SEED_LOCK_KEY = 7_331_002


@dataclass(frozen=True)
class DemoSeed:
    user_id: UUID
    portfolio_id: UUID
    connection_id: UUID
    token: str
    funded_now: bool


def load_or_create_token(path: Path) -> str:
    """The demo token lives beside the embedded state: the database keeps only its hash, so
    re-runs print the same working token."""
    return load_or_create_secret(path, generate_token)


async def seed_demo(pool: asyncpg.Pool, token: str) -> DemoSeed:
    async with pool.acquire() as lock_conn:
        await lock_conn.execute("SELECT pg_advisory_lock($1)", _SEED_LOCK_KEY)
        try:
            await seed_markets(pool)
            funded_now = False
            if not await lock_conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM paper_balances WHERE account = $1)", DEMO_PAPER_ACCOUNT):
                await fund_account(pool, DEMO_PAPER_ACCOUNT, DEMO_FUNDING)
                funded_now = True
            async with lock_conn.transaction():
                ids = await _seed_rows(lock_conn, token)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", _SEED_LOCK_KEY)
    user_id, connection_id, portfolio_id = ids
    return DemoSeed(user_id=user_id, portfolio_id=portfolio_id, connection_id=connection_id,
                    token=token, funded_now=funded_now)


async def _seed_rows(conn: asyncpg.Connection, token: str) -> tuple[UUID, UUID, UUID]:
    # Admin too: the demo shows scheduler control as well.
    user_id = await ensure_user(conn, DEMO_EMAIL, DEMO_NAME, is_admin=True)
    await create_token(conn, user_id, "demo", [USER_SCOPE, ADMIN_SCOPE], token=token)
    connection_id: UUID | None = await conn.fetchval(
        "SELECT id FROM exchange_connections WHERE user_id = $1 AND exchange_id = 'paper' "
        "AND paper_account = $2 ORDER BY created_at LIMIT 1",
        user_id, DEMO_PAPER_ACCOUNT)
    if connection_id is None:
        connection_id = await conn.fetchval(
            "INSERT INTO exchange_connections (user_id, exchange_id, label, paper_account) "
            "VALUES ($1, 'paper', $2, $3) RETURNING id",
            user_id, DEMO_CONNECTION_LABEL, DEMO_PAPER_ACCOUNT)
    assert connection_id is not None
    portfolio_id: UUID | None = await conn.fetchval(
        "SELECT id FROM portfolios WHERE user_id = $1 AND name = $2 ORDER BY created_at LIMIT 1",
        user_id, DEMO_PORTFOLIO_NAME)
    if portfolio_id is None:
        portfolio_id = await conn.fetchval(
            "INSERT INTO portfolios (user_id, connection_id, name, target_weights, quote_currency, "
            " rebalance_enabled, rebalance_interval, rebalance_threshold) "
            "VALUES ($1, $2, $3, $4::jsonb, 'USD', true, $5, $6) RETURNING id",
            user_id, connection_id, DEMO_PORTFOLIO_NAME, json.dumps(DEMO_TARGETS), DEMO_INTERVAL,
            DEMO_THRESHOLD)
    assert portfolio_id is not None
    return user_id, connection_id, portfolio_id
