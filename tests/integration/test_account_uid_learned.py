"""A Binance connection made before migration 014, or without the connection check, learns the
exchange's own id of its account from the pricer's balance answer; a second connection to the same
account is then named in an error (two live portfolios on them would undo each other's trades).
ccxt's real Binance and Kraken classes against the fake servers, real PostgreSQL."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from services.common.exchanges.account_ref import exchange_account_uid_ref
from services.common.exchanges.accounts import ExchangeAccounts
from services.pricer.app import Pricer
from tests.component.samples import due
from tests.support.ccxt_pipeline import fake_exchange, seed_ccxt_portfolio, use_exchange_clients
from tests.support.pipeline import Seeded

pytestmark = pytest.mark.integration


async def uid_ref(pool: asyncpg.Pool, connection_id: str) -> str | None:
    ref: str | None = await pool.fetchval(
        "SELECT account_uid_ref FROM exchange_connections WHERE id = $1::uuid", connection_id
    )
    return ref


async def test_the_pricer_records_the_account_a_binance_key_opens_and_names_a_second_connection_to_it(
    db_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    box = use_exchange_clients(monkeypatch)
    async with fake_exchange("binance") as fake:
        # Two connections to one account, written without the API's check (as before migration 014).
        first = await seed_ccxt_portfolio(db_pool, "binance", fake, box)
        second = await seed_ccxt_portfolio(db_pool, "binance", fake, box)
        accounts = ExchangeAccounts(db_pool)
        pricer = Pricer(accounts)
        try:
            await named_twice(pricer, first, second, fake.url, db_pool, caplog)
        finally:
            await accounts.close()


async def named_twice(
    pricer: Pricer, first: Seeded, second: Seeded, url: str, db_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """The first connection valued takes the account's name; the second is named in an error."""
    assert await uid_ref(db_pool, first.connection_id) is None
    await pricer.value(due(first.strategy))
    expected = exchange_account_uid_ref("binance", "1", api_url=url, sandbox=False)
    assert await uid_ref(db_pool, first.connection_id) == expected
    with caplog.at_level(logging.ERROR, logger="services.common.exchanges.accounts"):
        valued = await pricer.value(due(second.strategy))
        await pricer.value(due(second.strategy))  # named once per open client, not every run
    assert valued.total_value > 0  # the run itself goes on
    [error] = [r.getMessage() for r in caplog.records if "trade the same" in r.getMessage()]
    assert first.connection_id in error and second.connection_id in error and "binance account" in error
    assert await uid_ref(db_pool, second.connection_id) is None


async def test_an_exchange_that_does_not_name_the_account_records_nothing(
    db_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = use_exchange_clients(monkeypatch)
    async with fake_exchange("kraken") as fake:
        seeded = await seed_ccxt_portfolio(db_pool, "kraken", fake, box)
        accounts = ExchangeAccounts(db_pool)
        try:
            await Pricer(accounts).value(due(seeded.strategy))
        finally:
            await accounts.close()
        assert await uid_ref(db_pool, seeded.connection_id) is None
