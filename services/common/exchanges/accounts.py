"""Exchange accounts of one process: one exchange instance per connection (so each account has
its own rate limiter and no account waits for another), and prices and market rules shared per
exchange (thousands of portfolios on one exchange cost one ticker request, not thousands).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from services.common.exchanges.ccxt_prices import SingleFlightCache
from services.common.exchanges.port import ExchangePort, Market, RunFailed

PAPER = "paper"


@dataclass(frozen=True)
class Connection:
    id: str
    user_id: str
    exchange_id: str
    api_url: str | None
    sandbox: bool
    paper_account: str | None
    credentials_enc: bytes | None

    @property
    def market_key(self) -> tuple[str, str | None]:
        """Accounts with the same key see the same markets and prices."""
        return (self.exchange_id, self.api_url)


class UnknownConnection(RunFailed):
    code = "unknown_connection"


class ExchangeAccounts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ticker_ttl: float = 2.0,
        markets_ttl: float = 300.0,
        max_open: int = 2000,
        close_grace_seconds: float = 120.0,
    ) -> None:
        self.pool = pool
        # Least recently used first: a process serving many accounts keeps the busy ones open and
        # closes the rest, so memory stays bounded however many accounts pass through.
        self._connections: OrderedDict[str, Connection] = OrderedDict()
        self._exchanges: OrderedDict[str, ExchangePort] = OrderedDict()
        self.max_open = max_open
        self.close_grace_seconds = close_grace_seconds
        self._closing: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.prices_cache: SingleFlightCache[dict[str, Decimal]] = SingleFlightCache(ticker_ttl)
        self.markets_cache: SingleFlightCache[dict[str, Market]] = SingleFlightCache(markets_ttl)

    async def connection(self, connection_id: str) -> Connection:
        cached = self._connections.get(connection_id)
        if cached is not None:
            self._connections.move_to_end(connection_id)
            return cached
        row = await self.pool.fetchrow(
            "SELECT id::text, user_id::text, exchange_id, api_url, sandbox, paper_account, credentials_enc"
            " FROM exchange_connections WHERE id = $1::uuid",
            connection_id,
        )
        if row is None:
            raise UnknownConnection(f"exchange connection {connection_id} does not exist")
        conn = Connection(
            id=row["id"],
            user_id=row["user_id"],
            exchange_id=row["exchange_id"],
            api_url=row["api_url"],
            sandbox=row["sandbox"],
            paper_account=row["paper_account"],
            credentials_enc=bytes(row["credentials_enc"]) if row["credentials_enc"] is not None else None,
        )
        self._connections[connection_id] = conn
        while len(self._connections) > self.max_open:
            self._connections.popitem(last=False)
        return conn

    async def exchange(self, connection_id: str) -> ExchangePort:
        existing = self._exchanges.get(connection_id)
        if existing is not None:
            self._exchanges.move_to_end(connection_id)
            return existing
        conn = await self.connection(connection_id)
        async with self._lock:
            existing = self._exchanges.get(connection_id)
            if existing is None:
                existing = self._exchanges[connection_id] = self._open(conn)
                while len(self._exchanges) > self.max_open:
                    _, idle = self._exchanges.popitem(last=False)
                    self._close_later(idle)
        return existing

    def _close_later(self, exchange: ExchangePort) -> None:
        """Close an evicted instance once calls already in flight on it have had time to end.
        A paper account holds nothing to release: it is simply dropped (keeping thousands of
        them waiting out the grace period would be the one thing here that grows with churn)."""
        if exchange.exchange_id == PAPER:
            return

        async def close() -> None:
            await asyncio.sleep(self.close_grace_seconds)
            with contextlib.suppress(Exception):
                await exchange.close()

        task = asyncio.create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @property
    def open_count(self) -> int:
        return len(self._exchanges)

    def _open(self, conn: Connection) -> ExchangePort:
        if conn.exchange_id == PAPER:
            from services.common.exchanges.paper import PaperConfig, PaperExchange

            return PaperExchange(self.pool, conn.paper_account or conn.id, config=PaperConfig.from_env())
        from services.common.exchanges.ccxt_adapter import CcxtExchange
        from services.common.secrets import SecretBox

        credentials = SecretBox.from_env().open(conn.credentials_enc) if conn.credentials_enc else None
        return CcxtExchange(conn.exchange_id, credentials, api_url=conn.api_url, sandbox=conn.sandbox)

    async def prices(self, connection_id: str) -> dict[str, Decimal]:
        """Last price of every market of the connection's exchange, shared across accounts."""
        conn = await self.connection(connection_id)
        exchange = await self.exchange(connection_id)
        return await self.prices_cache.get(conn.market_key, lambda: exchange.fetch_prices(None))

    async def markets(self, connection_id: str) -> dict[str, Market]:
        conn = await self.connection(connection_id)
        exchange = await self.exchange(connection_id)
        return await self.markets_cache.get(conn.market_key, exchange.load_markets)

    def forget(self, connection_id: str) -> None:
        """Drop a cached connection (its credentials or URL changed)."""
        self._connections.pop(connection_id, None)
        self._exchanges.pop(connection_id, None)

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        for exchange in self._exchanges.values():
            with contextlib.suppress(Exception):  # closing is best effort at shutdown
                await exchange.close()
        self._exchanges.clear()
