import asyncpg

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
