"""SharedTickerCache against the fake Binance: one public instance, one request for many callers."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from services.common.exchanges.ccxt_prices import SharedTickerCache
from tests.fakes.binance import start_fake_binance


async def test_concurrent_callers_share_one_ticker_request_and_markets_are_cached():
    async with start_fake_binance() as fake:
        cache = SharedTickerCache(ticker_ttl=60, markets_ttl=600)
        try:
            results = await asyncio.gather(*(cache.get_prices("binance", fake.url) for _ in range(20)))
            markets = await cache.get_markets("binance", fake.url)
            await cache.get_markets("binance", fake.url)
            assert cache.public_exchange("binance", fake.url) is cache.public_exchange("binance", fake.url)
        finally:
            await cache.close()
    assert all(r["BTC/USDT"] == Decimal("60000") for r in results)
    assert markets["ETH/USDT"].min_cost == Decimal("5")
    ticker_calls = [r for r in fake.requests if r.path == "/api/v3/ticker/24hr"]
    assert len(ticker_calls) == 1
    assert cache.markets.loads == 1
    # Public data needs no key: nothing signed was sent.
    assert not any("X-MBX-APIKEY" in r.headers for r in fake.requests)
