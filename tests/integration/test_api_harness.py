"""Fixtures for the API tests (imported by each test_api*/test_rls*/test_cli* module; no tests here).

The app runs in-process (httpx over ASGI, with its lifespan) against the session's real database
and real NATS, on a unique namespace and stream per test; the stream is deleted afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet

from services.api.accounts import create_token, ensure_user
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.common.secrets import SecretBox
from services.ledger.store import UPSERT_ORDER
from tests.support.pipeline import delete_stream

pytestmark = pytest.mark.integration


def paper_account(prefix: str = "acct") -> str:
    """A paper account name of its own: an account has one connection, across every user."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Api:
    client: httpx.AsyncClient
    settings: ApiSettings
    pool: asyncpg.Pool
    box: SecretBox

    async def user(self, *, admin: bool = False, with_connection: bool = True) -> User:
        email = f"u{uuid.uuid4().hex[:10]}@example.com"
        async with self.pool.acquire() as conn:
            user_id = await ensure_user(conn, email, "Test", is_admin=admin)
            token = await create_token(conn, user_id, "test", ["user", "admin"] if admin else ["user"])
        user = User(id=user_id, email=email, token=token, api=self)
        if with_connection:
            response = await user.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": paper_account()})
            assert response.status_code == 201, response.text
            user.connection_id = response.json()["connection"]["id"]
        return user


@dataclass
class User:
    id: uuid.UUID
    email: str
    token: str
    api: Api
    connection_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, url: str, **params: Any) -> httpx.Response:
        return await self.api.client.get(url, params=params or None, headers=self.headers)

    async def post(self, url: str, body: Any = None) -> httpx.Response:
        return await self.api.client.post(url, json=body, headers=self.headers)

    async def put(self, url: str, body: Any) -> httpx.Response:
        return await self.api.client.put(url, json=body, headers=self.headers)

    async def delete(self, url: str, **params: Any) -> httpx.Response:
        return await self.api.client.delete(url, params=params or None, headers=self.headers)

    async def create_portfolio(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "name": "My Portfolio",
            "targetWeights": {"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10},
            "rebalanceEnabled": True,
            "rebalanceInterval": "weekly",
            "rebalanceThreshold": 10,
            "maxOrdersPerRebalance": 5,
            **overrides,
        }
        response = await self.post("/api/portfolios/manage", body)
        assert response.status_code == 201, response.text
        portfolio: dict[str, Any] = response.json()["portfolio"]
        return portfolio


def api_settings(database_url: str, nats_url: str, namespace: str, **extra: Any) -> ApiSettings:
    return ApiSettings(
        database_url=database_url,
        nats_url=nats_url,
        bus_namespace=namespace,
        stream_name=f"S{namespace.upper()}",
        api_verify_connections=False,
        db_pool_max=4,
        **extra,
    )


@pytest.fixture(name="api")
async def api_fixture(database_url: str, nats_url: str, namespace: str, db_pool: asyncpg.Pool) -> AsyncIterator[Api]:
    settings = api_settings(database_url, nats_url, namespace)
    box = SecretBox([Fernet.generate_key()])
    app = create_app(settings, secret_box=box)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield Api(client=client, settings=settings, pool=db_pool, box=box)
    await delete_stream(nats_url, settings.stream_name)


# ---------------------------------------------------------------- rows as the ledger writes them
async def insert_run(
    pool: asyncpg.Pool,
    user_id: uuid.UUID,
    portfolio_id: str,
    *,
    executed_at: datetime,
    success: bool = True,
    triggered_by: str = "scheduler",
    value: str = "1000",
    traded: str = "100",
    fees: str = "0.1",
    dry_run: bool = False,
) -> uuid.UUID:
    run_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO rebalance_runs (id, portfolio_id, user_id, portfolio_name, status, success, dry_run,"
        " triggered_by, started_at, executed_at, duration_ms, portfolio_value, total_value_traded, fees,"
        " orders_planned, orders_executed, decision, reason, orders, errors)"
        " VALUES ($1, $2, $3, 'P', $4, $5, $6, $7, $8, $8, 1200, $9, $10, $11, 2, 2, 'rebalance', 'drift',"
        " $12::text::jsonb, '[]'::text::jsonb)",
        run_id,
        uuid.UUID(portfolio_id),
        user_id,
        "succeeded" if success else "failed",
        success,
        dry_run,
        triggered_by,
        executed_at,
        Decimal(value),
        Decimal(traded),
        Decimal(fees),
        json.dumps([{"leg": 0, "symbol": "BTC/USD"}]),
    )
    return run_id


async def insert_trade(
    pool: asyncpg.Pool | asyncpg.Connection,
    user_id: uuid.UUID,
    portfolio_id: str,
    run_id: uuid.UUID,
    *,
    executed_at: datetime | None = None,
    asset: str = "BTC",
    side: str = "buy",
    quantity: str = "0.015",
    price: str = "50000.5",
    dry_run: bool = False,
) -> None:
    quantity_d, price_d = Decimal(quantity), Decimal(price)
    await pool.execute(
        "INSERT INTO trades (client_order_id, run_id, portfolio_id, user_id, exchange_id, symbol, asset,"
        " quote, side, quantity, price, value, fee, fee_currency, exchange_order_id, executed_at, dry_run)"
        " VALUES ($1, $2, $3, $4, 'paper', $5, $6, 'USD', $7, $8, $9, $10, $11, 'USD', $12, $13, $14)",
        f"rb-{uuid.uuid4().hex[:16]}",
        run_id,
        uuid.UUID(portfolio_id),
        user_id,
        f"{asset}/USD",
        asset,
        side,
        quantity_d,
        price_d,
        quantity_d * price_d,
        Decimal("0.75"),
        f"ex-{uuid.uuid4().hex[:8]}",
        executed_at or datetime.now(UTC),
        dry_run,
    )


async def insert_order(
    pool: asyncpg.Pool,
    user_id: uuid.UUID,
    portfolio_id: str,
    run_id: uuid.UUID,
    *,
    leg: int,
    status: str,
    created_at: datetime,
    symbol: str = "BTC/USD",
    side: str = "buy",
    amount: str = "0.5",
    filled: str = "0",
    error: dict[str, Any] | None = None,
    client_order_id: str | None = None,
) -> str:
    """An order written with the ledger's own statement (a second call moves it forward, as the
    ledger does); ``created_at`` is then set, as if it had been recorded then."""
    client_order_id = client_order_id or f"rb-{uuid.uuid4().hex[:16]}"
    price = Decimal("50000") if Decimal(filled) else None
    await pool.execute(
        UPSERT_ORDER,
        client_order_id, run_id, uuid.UUID(portfolio_id), user_id, leg, "paper", symbol, side, "market",
        Decimal(amount), status, Decimal(filled), price, Decimal(filled) * (price or 0), Decimal("0.1"), "USD",
        f"ex-{uuid.uuid4().hex[:8]}" if status != "failed" else None, False, error, True,
    )
    await pool.execute("UPDATE orders SET created_at = $2 WHERE client_order_id = $1", client_order_id, created_at)
    return client_order_id


async def insert_snapshot_and_activity(
    pool: asyncpg.Pool, user_id: uuid.UUID, portfolio_id: str, run_id: uuid.UUID
) -> None:
    await pool.execute(
        "INSERT INTO portfolio_snapshots (run_id, portfolio_id, user_id, kind, holdings, prices, total_value,"
        " taken_at) VALUES ($1, $2, $3, 'before', $4::text::jsonb, '{}'::text::jsonb, 1000, now())",
        run_id,
        uuid.UUID(portfolio_id),
        user_id,
        json.dumps({"BTC": "0.01"}),
    )
    await pool.execute(
        "INSERT INTO activity_log (message_id, user_id, portfolio_id, run_id, event_type, description)"
        " VALUES ($1, $2, $3, $4, 'rebalance.completed', 'run done')",
        uuid.uuid4().hex,
        user_id,
        uuid.UUID(portfolio_id),
        run_id,
    )
