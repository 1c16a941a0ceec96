"""Accounts on one exchange share its markets: ccxt's real Kraken and Binance classes, one client
per account, against the fake servers. One markets request serves them all, a failed load fails
only its own account, and markets are loaded afresh after their time to live."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from services.common.exchanges import port
from services.common.exchanges.ccxt_adapter import CcxtExchange
from services.common.exchanges.ccxt_client_ids import client_order_id_for
from services.common.exchanges.ccxt_shared_markets import SharedMarkets
from services.common.secrets import Credentials
from tests.fakes.clients import FakeSession, fake_session

MARKETS_PATHS = {"binance": "/api/v3/exchangeInfo", "kraken": "/0/public/AssetPairs"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["kraken", "binance"])
async def session(request: pytest.FixtureRequest) -> AsyncIterator[FakeSession]:
    async with fake_session(request.param) as running:
        yield running


def markets_requests(session: FakeSession) -> int:
    return sum(1 for r in session.fake.requests if r.path == MARKETS_PATHS[session.exchange_id])


def account(session: FakeSession, shared: SharedMarkets, credentials: Credentials | None = None) -> CcxtExchange:
    return CcxtExchange(
        session.exchange_id,
        credentials or session.credentials,
        api_url=session.fake.url,
        rate_limit_ms=1,
        shared_markets=shared,
    )


def buy(session: FakeSession) -> port.OrderRequest:
    cid = client_order_id_for(session.exchange_id, str(uuid.uuid4()), 0)
    return port.OrderRequest(session.symbol("BTC"), "buy", Decimal("0.01"), cid)


async def test_many_accounts_load_the_markets_once_and_hold_one_copy(session: FakeSession) -> None:
    shared = SharedMarkets()
    accounts = [account(session, shared) for _ in range(5)]
    try:
        results = await asyncio.gather(*(a.create_order(buy(session)) for a in accounts))
        balances = await asyncio.gather(*(a.fetch_balance() for a in accounts))
    finally:
        await asyncio.gather(*(a.close() for a in accounts))
    assert all(r.status == "closed" and r.filled == Decimal("0.01") for r in results)
    assert all(b["BTC"].total > 0 for b in balances)
    assert markets_requests(session) == 1
    assert shared.loads == 1
    first = accounts[0].client
    assert all(a.client.markets is first.markets and a.client.markets_by_id is first.markets_by_id for a in accounts)


async def test_an_account_whose_load_fails_does_not_fail_the_accounts_waiting_on_it(session: FakeSession) -> None:
    shared = SharedMarkets()
    session.fake.http_500_next(1, path=MARKETS_PATHS[session.exchange_id])
    first, second = account(session, shared), account(session, shared)
    try:
        outcomes = await asyncio.gather(first.fetch_balance(), second.fetch_balance(), return_exceptions=True)
        assert isinstance(outcomes[0], port.ExchangeError)  # its own load was answered 500
        assert isinstance(outcomes[1], dict) and outcomes[1]["BTC"].total > 0  # loaded through its own client
        assert (await first.fetch_balance())["BTC"].total > 0  # and shares those markets now
        assert first.client.markets is second.client.markets
    finally:
        await asyncio.gather(first.close(), second.close())
    assert markets_requests(session) == 2
    assert shared.loads == 2


async def test_markets_are_loaded_afresh_after_their_time_to_live(session: FakeSession) -> None:
    clock = Clock()
    shared = SharedMarkets(ttl=600, clock=clock)
    early, late, reloaded, after_reload = (account(session, shared) for _ in range(4))
    try:
        await early.fetch_balance()
        clock.now = 601
        await late.fetch_balance()  # a new account after the time to live loads them again
        assert markets_requests(session) == 2
        assert late.client.markets is not early.client.markets  # the earlier account keeps its own
        await reloaded.load_markets(reload=True)  # an explicit reload is shared from then on
        await after_reload.fetch_balance()
        assert after_reload.client.markets is reloaded.client.markets
    finally:
        await asyncio.gather(*(a.close() for a in (early, late, reloaded, after_reload)))
    assert markets_requests(session) == 3
