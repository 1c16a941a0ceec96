"""The benchmark's PostgreSQL window counts other connections' transactions exactly, including
those a backend had not reported yet when it closed, and leaves the benchmark's own reads out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple

import asyncpg
import pytest

from bench.pg_window import OwnReads, read_counters, wait_until_gone
from bench.pipeline_seed import POOL_APPLICATION, open_pool
from tests.infra import Infra, database_name


class Window(NamedTuple):
    database: str
    admin: asyncpg.Connection  # to another database, as the benchmark reads its counters
    own: OwnReads


@pytest.fixture
async def window(infra: Infra, own_database_url: str) -> AsyncIterator[Window]:
    admin = await asyncpg.connect(infra.admin_dsn)
    own = await OwnReads.open(own_database_url)
    try:
        yield Window(database_name(own_database_url), admin, own)
    finally:
        await own.close()
        await admin.close()


def _needs_report(own: OwnReads) -> None:
    if not own.can_report:
        pytest.skip("PostgreSQL before 15 cannot report a backend's counts on demand")


async def test_window_counts_the_others_transactions_and_not_its_own(window: Window, own_database_url: str) -> None:
    database, admin, own = window
    _needs_report(own)
    await own.start_counting()
    before = await read_counters(admin, database, 0)

    other = await asyncpg.connect(own_database_url)
    # Within a second of each other: a live backend holds these counts back (up to 10 s).
    for _ in range(7):
        await other.execute("SELECT 1")
    async with other.transaction():
        await other.execute("CREATE TABLE scratch (n int)")
        await other.execute("INSERT INTO scratch SELECT generate_series(1, 50)")
    for _ in range(3):
        assert await own.recorded() == 0
    await other.close()

    await wait_until_gone(admin, database, keep_pid=own.pid)
    await own.report()
    spent = await read_counters(admin, database, 0) - before
    # Its start (PostgreSQL reads the catalogs in a transaction), the 7 and the explicit one.
    assert spent.transactions - own.transactions == 9
    assert own.transactions == 4  # three reads and the report
    assert spent.wal_records >= 50


async def test_the_benchmark_pool_is_named_and_its_closing_awaited(window: Window, own_database_url: str) -> None:
    database, admin, own = window
    pool = await open_pool(own_database_url)
    await pool.fetchval("SELECT 1")
    named = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                                 " AND application_name = $2", database, POOL_APPLICATION)
    assert named >= 1
    await pool.close()
    await wait_until_gone(admin, database, keep_pid=own.pid, application_name=POOL_APPLICATION)
    left = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    assert [r["pid"] for r in left] == [own.pid]


async def test_an_empty_window_counts_only_its_report(window: Window) -> None:
    """The report itself is counted even when nothing else is pending on its connection."""
    database, admin, own = window
    _needs_report(own)
    await wait_until_gone(admin, database, keep_pid=own.pid)
    for _ in range(3):
        await own.start_counting()
        before = await read_counters(admin, database, 0)
        await own.report()
        spent = await read_counters(admin, database, 0) - before
        assert (spent.transactions, own.transactions) == (1, 1)
