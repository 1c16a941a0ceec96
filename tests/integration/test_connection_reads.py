"""Runs of many new accounts starting together read their exchange connections in one statement;
an unknown connection fails only its own caller."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.common.exchanges.accounts import ExchangeAccounts, UnknownConnection
from tests.support.pipeline import seed_portfolio

pytestmark = pytest.mark.integration


async def test_connections_asked_together_are_read_in_one_statement(db_pool: asyncpg.Pool) -> None:
    seeded = [await seed_portfolio(db_pool, weights={"BTC": 100}, balances={"USD": "100"}) for _ in range(3)]
    unknown = str(uuid.uuid4())
    accounts = ExchangeAccounts(db_pool)
    try:
        found = await asyncio.gather(
            *(accounts.connection(s.connection_id) for s in seeded),
            accounts.connection(unknown),
            accounts.connection(seeded[0].connection_id),  # the same one twice in a batch
            return_exceptions=True,
        )
        assert accounts._read_connection.batches == 1
        for seed, conn in zip(seeded, found[:3], strict=True):
            assert not isinstance(conn, BaseException)
            assert (conn.id, conn.exchange_id, conn.paper_account) == (seed.connection_id, "paper", seed.account)
        assert isinstance(found[3], UnknownConnection) and unknown in str(found[3])
        assert found[4] == found[0]
        # Read once: later calls are answered from the cache.
        await accounts.connection(seeded[1].connection_id)
        assert accounts._read_connection.batches == 1
    finally:
        await accounts.close()
