import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.common.migrate import apply_migrations, migration_files
from tests.integration.test_api_harness import insert_trade


async def test_migrations_are_applied_once_and_recorded(database_url: str) -> None:
    assert await apply_migrations(database_url) == []  # the fixture already applied them all
    conn = await asyncpg.connect(database_url)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    finally:
        await conn.close()
    assert versions == [p.stem for p in migration_files()]
    assert {"users", "portfolios", "rebalance_runs", "trades", "inbox", "outbox", "order_intents"} <= tables


async def test_large_outbox_payloads_and_run_plans_are_stored_with_lz4(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        try:
            await conn.execute("SET default_toast_compression = lz4")
        except asyncpg.PostgresError:
            pytest.skip("this PostgreSQL was built without lz4 (the migration keeps pglz there)")
        await conn.execute("RESET default_toast_compression")  # the column settings must do it alone
        payload = b'{"orders": [' + b",".join(b'{"leg": %d, "amount": "0.%08d"}' % (i, i) for i in range(400)) + b"]}"
        await conn.execute(
            "INSERT INTO outbox (producer, subject, message_id, payload) VALUES ('t', 't', 'lz4-check', $1)", payload
        )
        stored, method = await conn.fetchrow(
            "SELECT payload, pg_column_compression(payload) FROM outbox WHERE message_id = 'lz4-check'"
        )
        await conn.execute("DELETE FROM outbox WHERE message_id = 'lz4-check'")
        plan_columns = await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'rebalance_runs'::regclass AND attcompression = 'l'"
        )
    finally:
        await conn.close()
    assert bytes(stored) == payload and method == "lz4"
    assert {r["attname"] for r in plan_columns} == {"drift", "left_out", "orders", "errors", "strategy"}


async def test_fills_logged_before_the_feed_read_trades_are_shown_once(empty_database_url: str) -> None:
    """Up to migration 007 the ledger logged each fill as an activity row as well as a trade. After
    the upgrade the feed shows every fill once: the old ones as they were logged, the new ones from
    their trades (also when a ledger of the previous version still logs one), and no id twice."""
    versions = [p.stem for p in migration_files()]
    assert await apply_migrations(empty_database_url, through="007_lz4_toast") == versions[:7]
    user, portfolio, run = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 1, 1, tzinfo=UTC)

    async def trade(conn: asyncpg.Connection, asset: str, minute: int, dry_run: bool = False) -> None:
        await insert_trade(conn, user, str(portfolio), run, executed_at=start + timedelta(minutes=minute),
                           asset=asset, quantity="2", price="50.5", dry_run=dry_run)

    async def logged(conn: asyncpg.Connection, key: str, event_type: str, text: str, minute: int) -> None:
        await conn.execute(
            "INSERT INTO activity_log (message_id, user_id, portfolio_id, run_id, event_type, description,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            key, user, portfolio, run, event_type, text, start + timedelta(minutes=minute),
        )

    conn = await asyncpg.connect(empty_database_url)
    try:
        # Before the upgrade: a fill logged twice (trade and activity row), and the run's end.
        await trade(conn, "BTC", 1)
        await logged(conn, "m-old-fill", "order_filled", "Order executed successfully: buy 2 BTC at 50.5 USD", 1)
        await logged(conn, "m-old-done", "rebalance_succeeded", "old run done", 2)
        assert await apply_migrations(empty_database_url) == versions[7:]
        # After it: the ledger writes the trade only; a ledger of the previous version still both.
        await trade(conn, "ETH", 3, dry_run=True)
        await logged(conn, "m-new-done", "rebalance_succeeded", "new run done", 4)
        await trade(conn, "SOL", 5)
        await logged(conn, "m-straggler", "order_filled", "Order executed successfully: buy 2 SOL at 50.5 USD", 5)
        feed = await conn.fetch("SELECT id, event_type, description FROM activity_feed ORDER BY created_at, id")
    finally:
        await conn.close()
    assert [(f["event_type"], f["description"]) for f in feed] == [
        ("order_filled", "Order executed successfully: buy 2 BTC at 50.5 USD"),
        ("rebalance_succeeded", "old run done"),
        ("order_filled", "Order executed successfully: buy 2 ETH at 50.5 USD (simulated)"),
        ("rebalance_succeeded", "new run done"),
        ("order_filled", "Order executed successfully: buy 2 SOL at 50.5 USD"),
    ]
    assert len({f["id"] for f in feed}) == len(feed)


async def test_the_one_live_run_per_account_index_waits_for_two_live_runs_to_end(empty_database_url: str) -> None:
    """Migration 010 cannot build its unique index while two live runs trade one account: it says
    so, changes nothing, and applies once one of them has ended."""
    versions = [p.stem for p in migration_files()]
    assert await apply_migrations(empty_database_url, through="009_expired_runs") == versions[:9]
    conn = await asyncpg.connect(empty_database_url)
    try:
        user = await conn.fetchval("INSERT INTO users (email) VALUES ('two@example.test') RETURNING id")
        account = await conn.fetchval(
            "INSERT INTO exchange_connections (user_id, exchange_id) VALUES ($1, 'paper') RETURNING id", user
        )
        ids = [
            await conn.fetchval(
                "INSERT INTO portfolios (user_id, connection_id, name, target_weights, active_run_id,"
                " active_run_dry_run) VALUES ($1, $2, $3, '{\"BTC\": \"100\"}', gen_random_uuid(), false)"
                " RETURNING id",
                user, account, name,
            )
            for name in ("One", "Two")
        ]
        with pytest.raises(asyncpg.RaiseError, match=f"exchange connection {account} has two live runs"):
            await apply_migrations(empty_database_url)
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == "009_expired_runs"
        await conn.execute(
            "UPDATE portfolios SET active_run_id = NULL, active_run_dry_run = NULL WHERE id = $1", ids[1]
        )
        assert await apply_migrations(empty_database_url) == versions[9:]
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "UPDATE portfolios SET active_run_id = gen_random_uuid(), active_run_dry_run = false WHERE id = $1",
                ids[1],
            )
    finally:
        await conn.close()
