import asyncpg
import pytest

from services.common.migrate import apply_migrations, migration_files


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
