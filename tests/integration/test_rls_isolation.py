"""User A can neither see nor change user B's rows: through the API (404, empty lists) and with
direct SQL as the API's database role (zero rows, refused writes)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from tests.integration.test_api_harness import (
    Api,
    api_fixture,  # noqa: F401
    insert_run,
    insert_snapshot_and_activity,
    insert_trade,
)

pytestmark = pytest.mark.integration
USER_TABLES = (
    "users",
    "api_tokens",
    "exchange_connections",
    "portfolios",
    "rebalance_runs",
    "orders",
    "trades",
    "portfolio_snapshots",
    "activity_log",
)
# Views over those tables, read with the reader's rights: the tables' policies apply to them.
USER_VIEWS = ("activity_feed",)


async def _two_users_with_history(api: Api):
    alice, bob = await api.user(), await api.user()
    portfolio = await bob.create_portfolio(name="Bob's")
    run_id = await insert_run(api.pool, bob.id, portfolio["id"], executed_at=datetime.now(UTC))
    await insert_trade(api.pool, bob.id, portfolio["id"], run_id)
    await insert_snapshot_and_activity(api.pool, bob.id, portfolio["id"], run_id)
    await api.pool.execute(
        "INSERT INTO orders (client_order_id, run_id, portfolio_id, user_id, leg, exchange_id, symbol, side,"
        " amount, status) VALUES ($1, $2, $3, $4, 0, 'paper', 'BTC/USD', 'buy', 1, 'filled')",
        f"rb-{uuid.uuid4().hex[:12]}",
        run_id,
        uuid.UUID(portfolio["id"]),
        bob.id,
    )
    return alice, bob, portfolio


async def test_api_isolates_users(api: Api) -> None:
    alice, bob, portfolio = await _two_users_with_history(api)
    pid = portfolio["id"]
    assert (await alice.get("/api/portfolios/manage")).json()["portfolios"] == []
    assert (await alice.get("/api/portfolios/manage", id=pid)).status_code == 404
    assert (await alice.get(f"/api/v1/portfolios/{pid}")).status_code == 404
    for sub in ("history", "orders", "trades", "snapshots", "activity"):
        assert (await alice.get(f"/api/v1/portfolios/{pid}/{sub}")).status_code == 404, sub
    assert (await alice.get("/api/v1/history")).json()["total"] == 0
    assert (await alice.get("/api/v1/trades")).json()["total"] == 0
    assert (await alice.get("/api/v1/orders")).json()["total"] == 0
    assert (await alice.get("/api/v1/stats")).json()["runs"] == 0
    assert (await alice.get("/api/v1/trades/export")).text.count("\n") == 1  # the header only
    connections = (await alice.get("/api/v1/connections")).json()["connections"]
    assert bob.connection_id not in [c["id"] for c in connections]
    assert (await alice.get(f"/api/v1/connections/{bob.connection_id}")).status_code == 404

    # Changes are refused as "not found" and leave Bob's rows as they were.
    put = await alice.put("/api/portfolios/manage", {"id": pid, "name": "hijacked"})
    assert put.status_code == 404
    assert (await alice.delete("/api/portfolios/manage", id=pid)).status_code == 404
    assert (await alice.delete(f"/api/v1/connections/{bob.connection_id}")).status_code == 404
    assert (await alice.post("/api/scheduler/trigger", {"portfolioId": pid})).status_code == 404
    assert (await alice.post(f"/api/v1/portfolios/{pid}/preview")).status_code == 404
    # Alice cannot attach her portfolio to Bob's connection either.
    own = await alice.post(
        "/api/portfolios/manage", {"name": "A", "targetWeights": {"BTC": 100}, "connectionId": bob.connection_id}
    )
    assert own.status_code == 422 and own.json()["fields"] == ["connectionId"]
    assert (await bob.get(f"/api/v1/portfolios/{pid}")).json()["name"] == "Bob's"
    assert (await bob.get(f"/api/v1/portfolios/{pid}/trades")).json()["total"] == 1
    assert (await bob.get(f"/api/v1/portfolios/{pid}/orders")).json()["total"] == 1
    assert (await bob.get("/api/v1/orders")).json()["total"] == 1


async def _as_api_role(pool: asyncpg.Pool, user_id: uuid.UUID | None, sql: str, *args):
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE rebalancer_api")
        await conn.execute("SELECT set_config('app.user_id', $1, true)", str(user_id) if user_id else "")
        return await conn.fetch(sql, *args)


async def test_sql_as_api_role_sees_only_own_rows(api: Api) -> None:
    alice, bob, portfolio = await _two_users_with_history(api)
    for table in USER_TABLES + USER_VIEWS:
        column = "id" if table == "users" else "user_id"
        rows = await _as_api_role(api.pool, alice.id, f"SELECT {column} FROM {table} WHERE {column} = $1", bob.id)
        assert rows == [], table
        # Bob sees his own rows through the very same role (the policy is per user, not a blanket deny).
        if table not in ("api_tokens",):
            mine = await _as_api_role(api.pool, bob.id, f"SELECT {column} FROM {table} WHERE {column} = $1", bob.id)
            assert mine, table
        # Without a user set, nothing at all is visible.
        assert await _as_api_role(api.pool, None, f"SELECT 1 FROM {table}") == [], table

    # Writes: updates and deletes of Bob's rows match nothing; inserting rows for Bob is refused.
    pid = uuid.UUID(portfolio["id"])
    updated = await _as_api_role(api.pool, alice.id, "UPDATE portfolios SET name = 'x' WHERE id = $1 RETURNING id", pid)
    assert updated == []
    deleted = await _as_api_role(api.pool, alice.id, "DELETE FROM portfolios WHERE id = $1 RETURNING id", pid)
    assert deleted == []
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as_api_role(
            api.pool,
            alice.id,
            "INSERT INTO exchange_connections (user_id, exchange_id, paper_account) VALUES ($1, 'paper', 'x')",
            bob.id,
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as_api_role(
            api.pool,
            alice.id,
            "UPDATE portfolios SET user_id = $1 WHERE user_id = $2",
            bob.id,
            alice.id,
        )
    assert await api.pool.fetchval("SELECT name FROM portfolios WHERE id = $1", pid) == "Bob's"


async def test_api_role_cannot_read_secrets_or_write_history(api: Api) -> None:
    alice = await api.user()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as_api_role(api.pool, alice.id, "SELECT credentials_enc FROM exchange_connections")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as_api_role(api.pool, alice.id, "SELECT token_hash FROM api_tokens")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as_api_role(
            api.pool,
            alice.id,
            "INSERT INTO rebalance_runs (id, portfolio_id, user_id, started_at) VALUES ($1, $1, $2, now())",
            uuid.uuid4(),
            alice.id,
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as_api_role(api.pool, alice.id, "UPDATE portfolios SET active_run_id = gen_random_uuid()")


async def test_rls_is_forced_on_every_user_table(api: Api) -> None:
    rows = await api.pool.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY($1::text[])",
        list(USER_TABLES),
    )
    assert {r["relname"] for r in rows} == set(USER_TABLES)
    assert all(r["relrowsecurity"] and r["relforcerowsecurity"] for r in rows)


async def test_service_role_sees_everything(api: Api) -> None:
    """Internal services act as rebalancer_service (or as the owner, a member of it): all users' rows."""
    _, bob, _ = await _two_users_with_history(api)
    async with api.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE rebalancer_service")
        count = await conn.fetchval("SELECT count(*) FROM trades WHERE user_id = $1", bob.id)
        users = await conn.fetchval("SELECT count(*) FROM users")
        # The ledger's write as this role: a trade's id comes from the activity sequence (migration 008).
        run_id = await conn.fetchval("SELECT run_id FROM trades WHERE user_id = $1", bob.id)
        trade_id = await conn.fetchval(
            "INSERT INTO trades (client_order_id, run_id, portfolio_id, user_id, exchange_id, symbol, asset, quote,"
            " side, quantity, price, value, executed_at) SELECT 'svc-' || gen_random_uuid(), run_id, portfolio_id,"
            " user_id, exchange_id, symbol, asset, quote, side, quantity, price, value, now()"
            " FROM trades WHERE user_id = $1 RETURNING id", bob.id)
        fed = await conn.fetchval("SELECT count(*) FROM activity_feed WHERE id = $1 AND run_id = $2", trade_id, run_id)
    assert count == 1
    assert users >= 2
    assert fed == 1
