"""The services' connection pool releases connections without a reset statement: what must not
leak from one use to the next still does not."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from services.common.db import create_pool

pytestmark = pytest.mark.integration


async def test_a_transaction_left_open_is_rolled_back_before_the_connection_is_reused(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (id int) ON COMMIT DROP")
            first_pid = conn.get_server_pid()
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first_pid  # the same connection, reused
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    finally:
        await pool.close()


async def test_transaction_scoped_settings_end_with_their_transaction(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = '1234ms'")
            await conn.execute("SELECT set_config('app.user_id', 'someone', true)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") != "1234ms"
            assert await conn.fetchval("SELECT current_setting('app.user_id', true)") in (None, "")
    finally:
        await pool.close()


async def test_pooled_connections_send_no_reset_statement(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            assert isinstance(conn, asyncpg.Connection)
            assert conn.get_reset_query() == ""
    finally:
        await pool.close()


async def test_numerics_round_trip_exactly_as_text(database_url: str) -> None:
    # The pool sends and reads numerics as text: every value comes back the same, scale included,
    # in arrays too, and what PostgreSQL computes arrives with its own scale.
    values = [Decimal("0.10000000"), Decimal("1E-8"), Decimal("123456789012345678901234.5678"), Decimal("-2.50"),
              Decimal("NaN")]
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        for value in values:
            back = await pool.fetchval("SELECT $1::numeric", value)
            assert str(back) == str(value) or (value.is_nan() and back.is_nan())
        assert await pool.fetchval("SELECT $1::numeric[]", [Decimal("1.50"), None, 7]) == [
            Decimal("1.50"), None, Decimal("7")]
        product = await pool.fetchval("SELECT $1::numeric * $2::numeric", Decimal("0.1"), Decimal("0.20"))
        assert isinstance(product, Decimal) and str(product) == "0.020"
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            await pool.fetchval("SELECT $1::numeric", "not a number")
    finally:
        await pool.close()
