"""The hot statements that reach growing tables by key use the tables' indexes, even under the
generic plan PostgreSQL caches while a table is still small.

asyncpg prepares every statement and PostgreSQL caches a generic plan after five runs. Made on a
fresh deployment (a table nearly empty and not analyzed yet), PostgreSQL's default planner costs
chose a full scan for a join on an unnest() of keys, and the cached plan kept scanning as the
table grew, until autovacuum's next ANALYZE: the benchmark measured 2-5 ms per call at 40,000
rows. The services' pools plan with SSD costs (``db.PLANNER_SETTINGS``), under which every one of
these statements looks its rows up by key at any table size.
"""

from __future__ import annotations

import asyncpg
import pytest

from services.common.db import create_pool
from services.common.exchanges import paper_batch
from services.common.exchanges.accounts import READ_CONNECTIONS
from services.common.exchanges.paper import READ_BALANCES
from services.executor import intents
from services.scheduler import repository as scheduler_repo

pytestmark = pytest.mark.integration

STATEMENTS = {
    "record_outcomes": (intents.RECORD_OUTCOMES, "order_intents"),
    "mark_sending_many": (intents.MARK_SENDING_MANY, "order_intents"),
    "ensure_intents": (intents.ENSURE_INTENTS, "order_intents"),
    "read_balances": (READ_BALANCES, "paper_balances"),
    "paper_write_batch": (paper_batch._WRITE_BATCH, "paper_balances"),
    "paper_read_accounts": (paper_batch.READ_ACCOUNTS, "paper_balances"),
    "paper_read_accounts_orders": (paper_batch.READ_ACCOUNTS, "paper_orders"),
    "read_connections": (READ_CONNECTIONS, "exchange_connections"),
    # A live claim looks up the connection's other live portfolios (migration 016's index).
    "claim_one": (scheduler_repo.CLAIM_ONE_SQL, "portfolios"),
    "claim_due": (scheduler_repo.CLAIM_DUE_SQL, "portfolios"),
}


async def grow_to(conn: asyncpg.Connection, rows: int) -> None:
    """Balances of ``rows`` accounts and ``rows`` legs of earlier runs, not analyzed."""
    await conn.execute(
        "INSERT INTO paper_balances (account, asset, free) SELECT 'a' || g, 'USD', 1 FROM generate_series(1, $1) g",
        rows,
    )
    await conn.execute(
        "INSERT INTO order_intents (client_order_id, run_id, leg, portfolio_id, user_id, connection_id, symbol,"
        " side, amount) SELECT 'c' || g, gen_random_uuid(), g, gen_random_uuid(), gen_random_uuid(),"
        " gen_random_uuid(), 'A/USD', 'buy', 1 FROM generate_series(1, $1) g",
        rows,
    )


async def generic_plan(conn: asyncpg.Connection, statement: str) -> str:
    """The generic plan PostgreSQL would cache for ``statement``."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE probe AS {statement}")
    try:
        count = await conn.fetchval(
            "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = 'probe'"
        )
        rows = await conn.fetch(f"EXPLAIN EXECUTE probe({', '.join(['NULL'] * count)})")
        return "\n".join(row[0] for row in rows)
    finally:
        await conn.execute("DEALLOCATE probe")
        await conn.execute("RESET plan_cache_mode")


@pytest.mark.parametrize("rows", [0, 20, 1000])
async def test_a_plan_cached_while_tables_are_small_looks_rows_up_by_key(own_database_url: str, rows: int) -> None:
    pool = await create_pool(own_database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            await grow_to(conn, rows)
            plans = {name: await generic_plan(conn, statement) for name, (statement, _) in STATEMENTS.items()}
        async with pool.acquire() as conn:  # the same connection again: the setting outlives a release
            assert await conn.fetchval("SHOW random_page_cost") == "1.1"
    finally:
        await pool.close()
    for name, (_, table) in STATEMENTS.items():
        assert f"on {table}" in plans[name], plans[name]  # the statement does reach the table
        assert f"Seq Scan on {table}" not in plans[name], f"{name}:\n{plans[name]}"
