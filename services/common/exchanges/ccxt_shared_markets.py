"""ccxt markets loaded once per process per exchange, and shared by every account's client.

A ccxt client loads its exchange's markets before its first call, and keeps its own copy. With one
client per account, a thousand accounts on Binance cost a thousand ``exchangeInfo`` requests (each
weighs 20 against an IP-wide 6,000 a minute: a burst of new accounts would get the process's IP
banned) and a thousand copies of a few thousand markets. Here the first account of a
(exchange id, API URL, sandbox) loads them through its own client, and every later client takes
them by reference (ccxt's ``set_markets_from_exchange``). After ``ttl`` seconds the next new client
loads them afresh; clients already holding markets keep theirs, as a lone client would.

A load that fails fails its own caller only: an account waiting on another account's load (whose
key may have been revoked) loads through its own client instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from services.common.exchanges.single_flight import SingleFlightCache

log = logging.getLogger(__name__)

Key = tuple[str, str | None, bool]  # exchange id, API URL, sandbox

# What ``set_markets_from_exchange`` reads of its source: the markets and currencies, never keys.
_MARKET_ATTRIBUTES = (
    "id",
    "markets",
    "markets_by_id",
    "symbols",
    "ids",
    "currencies",
    "currencies_by_id",
    "baseCurrencies",
    "quoteCurrencies",
    "codes",
)


def market_source(client: Any) -> SimpleNamespace:
    """A client's loaded markets, detached from the client (its session and credentials)."""
    helpers = client.safe_list(client.options, "marketHelperProps", [])
    options = {"marketHelperProps": helpers, **{h: client.options.get(h) for h in helpers}}
    return SimpleNamespace(**{name: getattr(client, name) for name in _MARKET_ATTRIBUTES}, options=options)


class SharedMarkets:
    def __init__(self, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._sources: SingleFlightCache[SimpleNamespace] = SingleFlightCache(ttl, clock)

    @property
    def loads(self) -> int:
        """Loads actually sent to an exchange (for tests)."""
        return self._sources.loads

    async def share_into(self, key: Key, client: Any, load_own: Callable[[], Awaitable[None]]) -> None:
        """Give ``client`` the markets of ``key``, loading them through it (``load_own``) when no
        fresh ones exist and no other client is loading them."""
        loaded_here = False

        async def load() -> SimpleNamespace:
            nonlocal loaded_here
            loaded_here = True
            await load_own()
            return market_source(client)

        while True:
            try:
                source = await self._sources.get(key, load)
            except Exception as exc:
                if loaded_here:
                    raise
                # Another account's load failed (its key may be revoked): load through this one.
                log.debug("%s markets: a shared load failed (%s); loading through this client", key[0],
                          type(exc).__name__)
                continue
            if not loaded_here:
                client.set_markets_from_exchange(source)
            return

    def clear(self) -> None:
        """Forget every exchange's markets (tests: a fake server on a reused port is another exchange)."""
        self._sources.clear()

    def publish(self, key: Key, client: Any) -> None:
        """``client`` has just loaded ``key``'s markets: later clients take these."""
        self._sources.put(key, market_source(client))


# One per process: every account's client of an exchange shares its markets.
SHARED_MARKETS = SharedMarkets()
