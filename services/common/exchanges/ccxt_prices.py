"""Public market data shared by every account of a process: tickers and market rules.

One public (credential-less) ccxt instance per (exchange id, API URL). ``fetch_tickers`` results
are cached for ``ticker_ttl`` seconds and markets for ``markets_ttl``; concurrent callers of an
expired entry share one in-flight request instead of each hitting the exchange.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

from services.common.exchanges import port
from services.common.exchanges.ccxt_adapter import CcxtExchange
from services.common.exchanges.single_flight import SingleFlightCache

Key = tuple[str, str | None]


class SharedTickerCache:
    """Prices and market rules per exchange, shared by every account in the process."""

    def __init__(
        self,
        *,
        ticker_ttl: float = 5.0,
        markets_ttl: float = 3600.0,
        timeout_ms: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout_ms = timeout_ms
        self._public: dict[Key, CcxtExchange] = {}
        self.tickers: SingleFlightCache[dict[str, Decimal]] = SingleFlightCache(ticker_ttl, clock)
        self.markets: SingleFlightCache[dict[str, port.Market]] = SingleFlightCache(markets_ttl, clock)

    def public_exchange(self, exchange_id: str, api_url: str | None = None) -> CcxtExchange:
        key = (exchange_id, api_url)
        exchange = self._public.get(key)
        if exchange is None:
            exchange = CcxtExchange(exchange_id, None, api_url=api_url, timeout_ms=self._timeout_ms)
            self._public[key] = exchange
        return exchange

    async def get_prices(self, exchange_id: str, api_url: str | None = None) -> dict[str, Decimal]:
        """Last price of every market of the exchange, at most ``ticker_ttl`` seconds old."""
        exchange = self.public_exchange(exchange_id, api_url)
        return await self.tickers.get((exchange_id, api_url), exchange.fetch_prices)

    async def get_markets(self, exchange_id: str, api_url: str | None = None) -> dict[str, port.Market]:
        exchange = self.public_exchange(exchange_id, api_url)
        return await self.markets.get((exchange_id, api_url), lambda: exchange.load_markets(reload=True))

    async def close(self) -> None:
        exchanges, self._public = list(self._public.values()), {}
        # Together, as ExchangeAccounts closes its clients: ccxt waits a quarter second in each close.
        await asyncio.gather(*(exchange.close() for exchange in exchanges))
