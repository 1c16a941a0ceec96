"""Shared fixtures: real NATS JetStream and PostgreSQL, isolated per test session.

Each session gets its own freshly migrated database and its own subject namespace and stream
name, so concurrent runs never see each other's data; both are removed at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import ccxt.async_support as ccxt_async
import pytest
from hypothesis import settings as hypothesis_settings

from services.common.db import create_pool
from services.common.exchanges.ccxt_shared_markets import SHARED_MARKETS
from services.common.migrate import apply_migrations
from tests.infra import Infra, database_name, start_infra

# CI runs property tests on a fixed sequence of examples, so a run is repeatable; locally each run
# explores new random examples.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _fresh_shared_markets() -> None:
    """Every test starts with no exchange's markets shared: fake servers come and go, and one may
    get a port an earlier one had (the same API URL, other markets)."""
    SHARED_MARKETS.clear()


@pytest.fixture(autouse=True, scope="session")
def _no_pause_when_ccxt_closes() -> Iterator[None]:
    """ccxt pauses a quarter of a second in every close for TLS connections to finish closing
    (its PR 23470). The fakes speak plain HTTP, and the pause cost every in-process pipeline half a
    second to stop (its pricer's and executor's clients), some 100 s of the suite."""
    exchange = ccxt_async.Exchange
    pause = exchange.timeout_on_exit
    exchange.timeout_on_exit = 0
    yield
    exchange.timeout_on_exit = pause


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """NATS_URL / DATABASE_URL when set, otherwise embedded servers for this session."""
    with start_infra() as running:
        yield running


@pytest.fixture(scope="session")
def nats_url(infra: Infra) -> str:
    return infra.nats_url


async def _empty_database(infra: Infra) -> str:
    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return infra.dsn_for(name)


async def _migrated_database(infra: Infra) -> str:
    dsn = await _empty_database(infra)
    await apply_migrations(dsn)
    return dsn


async def _drop_database(infra: Infra, dsn: str) -> None:
    name = database_name(dsn)
    admin = await asyncpg.connect(infra.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh, migrated database for this test session, dropped afterwards."""
    dsn = await _migrated_database(infra)
    yield dsn
    await _drop_database(infra, dsn)


@pytest.fixture
async def own_database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh, migrated database for one test that must see no other test's rows (a scheduler
    that claims every due portfolio, a key rotation over every connection)."""
    dsn = await _migrated_database(infra)
    yield dsn
    await _drop_database(infra, dsn)


@pytest.fixture
async def empty_database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh database with no migration applied (to test an upgrade), dropped afterwards."""
    dsn = await _empty_database(infra)
    yield dsn
    await _drop_database(infra, dsn)


@pytest.fixture(scope="session")
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
def namespace() -> str:
    """A unique subject namespace (and stream) per test: tests never share messages."""
    return f"t{uuid.uuid4().hex[:10]}"


def pytest_report_header() -> list[str]:
    return [f"NATS_URL={os.environ.get('NATS_URL', '(embedded)')} DATABASE_URL="
            f"{'(set)' if os.environ.get('DATABASE_URL') else '(embedded)'}"]
