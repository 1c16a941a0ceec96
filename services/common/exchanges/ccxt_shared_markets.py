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

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

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


@dataclass(frozen=True)
class _Source:
    markets: SimpleNamespace
    loaded_at: float


def market_source(client: Any) -> SimpleNamespace:
    """A client's loaded markets, detached from the client (its session and credentials)."""
    helpers = client.safe_list(client.options, "marketHelperProps", [])
    options = {"marketHelperProps": helpers, **{h: client.options.get(h) for h in helpers}}
    return SimpleNamespace(**{name: getattr(client, name) for name in _MARKET_ATTRIBUTES}, options=options)


class SharedMarkets:
    def __init__(self, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._sources: dict[Key, _Source] = {}
        self._loading: dict[Key, asyncio.Future[None]] = {}
        self.loads = 0  # loads actually sent to an exchange (for tests)

    async def share_into(self, key: Key, client: Any, load_own: Callable[[], Awaitable[None]]) -> None:
        """Give ``client`` the markets of ``key``, loading them through it (``load_own``) when no
        fresh ones exist and no other client is loading them."""
        while True:
            source = self._sources.get(key)
            if source is not None and self._clock() - source.loaded_at < self.ttl:
                client.set_markets_from_exchange(source.markets)
                return
            loading = self._loading.get(key)
            if loading is None:
                await self._load(key, client, load_own)
                return
            try:
                await asyncio.shield(loading)
            except Exception as exc:  # another account's load failed: this one loads through its own
                log.debug("%s markets: a shared load failed (%s); loading through this client", key[0],
                          type(exc).__name__)

    async def _load(self, key: Key, client: Any, load_own: Callable[[], Awaitable[None]]) -> None:
        loading: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[key] = loading
        try:
            self.loads += 1
            await load_own()
        except BaseException as exc:
            loading.set_exception(exc if isinstance(exc, Exception) else RuntimeError("markets load cancelled"))
            loading.exception()  # retrieved: waiters load through their own clients
            raise
        else:
            self.publish(key, client)
            loading.set_result(None)
        finally:
            del self._loading[key]

    def clear(self) -> None:
        """Forget every exchange's markets (tests: a fake server on a reused port is another exchange)."""
        self._sources.clear()

    def publish(self, key: Key, client: Any) -> None:
        """``client`` has just loaded ``key``'s markets: later clients take these."""
        self._sources[key] = _Source(market_source(client), self._clock())


# One per process: every account's client of an exchange shares its markets.
SHARED_MARKETS = SharedMarkets()
