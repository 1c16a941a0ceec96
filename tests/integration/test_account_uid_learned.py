"""A connection made before migration 014, or without the connection check, learns the exchange's
own id of its account from the pricer's valuation (Binance's balance answer, OKX's and Bybit's one
more read); a second connection to the same
account is then marked (migration 015) and its live runs refused (live portfolios on both would undo
each other's trades, and could trade at once).
ccxt's real Binance, OKX, Bybit and Kraken classes against the fake servers, real PostgreSQL."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from contracts.v1 import RebalanceCompleted
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


@pytest.mark.parametrize("exchange_id", ["binance", "okx", "bybit", "gate", "kucoin", "bitget"])
async def test_the_pricer_records_the_account_a_key_opens_and_refuses_live_runs_on_a_second_connection(
    exchange_id: str, db_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    box = use_exchange_clients(monkeypatch)
    async with fake_exchange(exchange_id) as fake:
        # Two connections to one account, written without the API's check (as before migration 014).
        first = await seed_ccxt_portfolio(db_pool, exchange_id, fake, box)
        second = await seed_ccxt_portfolio(db_pool, exchange_id, fake, box)
        account = fake.named_account()
        assert account is not None
        expected = exchange_account_uid_ref(exchange_id, account, api_url=fake.url, sandbox=False)
        accounts = ExchangeAccounts(db_pool)
        try:
            await named_twice(Pricer(accounts), first, second, expected, db_pool, caplog)
            # Another process (a pricer replica, a restart) reads the mark with the connection.
            replica = ExchangeAccounts(db_pool)
            try:
                await refused_live(Pricer(replica), second, f"connection {first.connection_id}")
            finally:
                await replica.close()
            await freed_once_the_first_is_deleted(Pricer(accounts), first, second, expected, db_pool)
        finally:
            await accounts.close()


async def named_twice(
    pricer: Pricer, first: Seeded, second: Seeded, expected: str, db_pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first connection valued takes the account's name; the second is marked as its second
    connection, named in an error log once, and refused live runs; its dry runs go on."""
    assert await uid_ref(db_pool, first.connection_id) is None
    await pricer.value(due(first.strategy))
    assert await uid_ref(db_pool, first.connection_id) == expected
    with caplog.at_level(logging.ERROR, logger="services.common.exchanges.accounts"):
        # Another user's connection is not named to this one's user.
        await refused_live(pricer, second, "another user's connection")
        assert first.connection_id not in await refused_live(pricer, second, "another user's connection")
        dry = await pricer.value(due(second.strategy.model_copy(update={"dry_run": True})))
    assert dry.total_value > 0
    [error] = [r.getMessage() for r in caplog.records if "trade the same" in r.getMessage()]
    exchange_id = first.strategy.exchange_id
    assert first.connection_id in error and second.connection_id in error and f"{exchange_id} account" in error
    assert await uid_ref(db_pool, second.connection_id) is None
    assert await same_account_as(db_pool, second.connection_id) == first.connection_id
    assert await same_account_as(db_pool, first.connection_id) is None
    assert (await pricer.value(due(first.strategy))).total_value > 0  # the first trades on
    # Both connections of one user: the other is named, so the user knows which two they are.
    await db_pool.execute(
        "UPDATE exchange_connections SET user_id = (SELECT user_id FROM exchange_connections WHERE id = $1::uuid)"
        " WHERE id = $2::uuid",
        first.connection_id,
        second.connection_id,
    )
    await refused_live(pricer, second, f"connection {first.connection_id}")


async def freed_once_the_first_is_deleted(
    pricer: Pricer, first: Seeded, second: Seeded, expected: str, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM portfolios WHERE connection_id = $1::uuid", first.connection_id)
        await conn.execute("DELETE FROM exchange_connections WHERE id = $1::uuid", first.connection_id)
    assert await same_account_as(db_pool, second.connection_id) is None
    assert (await pricer.value(due(second.strategy))).total_value > 0  # at once, in the process that marked it
    await pricer.value(due(second.strategy))  # and it takes the account's name, so no new key can take it
    assert await uid_ref(db_pool, second.connection_id) == expected


async def refused_live(pricer: Pricer, seeded: Seeded, other: str) -> str:
    """The live run fails at the pricer with ``shared_account``, before anything is planned."""
    outcome = await pricer.outcome(due(seeded.strategy))
    assert isinstance(outcome, RebalanceCompleted) and outcome.status == "failed"
    [error] = outcome.errors
    assert error.code == "shared_account" and error.stage == "pricer"
    same = f"exchange connection {seeded.connection_id} trades the same {seeded.strategy.exchange_id} account as"
    assert f"{same} {other}" in error.message
    assert "delete one of the two connections (dry runs go on)" in error.message
    return error.message


async def same_account_as(pool: asyncpg.Pool, connection_id: str) -> str | None:
    other: str | None = await pool.fetchval(
        "SELECT same_account_as::text FROM exchange_connections WHERE id = $1::uuid", connection_id
    )
    return other


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
