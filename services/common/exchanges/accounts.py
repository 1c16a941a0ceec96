"""Exchange accounts of one process: one exchange instance per connection (so each account has
its own rate limiter and no account waits for another), and prices and market rules shared per
exchange (thousands of portfolios on one exchange cost one ticker request, not thousands).

Instances are used inside ``async with accounts.use(connection_id) as exchange``, which counts the
calls in flight on each. Beyond ``max_open`` the least recently used instance with nothing in
flight is closed at once; one in use is never closed under its caller, and never duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from services.common.coalesce import Coalescer
from services.common.exchanges.account_ref import exchange_account_uid_ref
from services.common.exchanges.port import ExchangePort, KeyRefused, Market, RetryLater, RunFailed
from services.common.exchanges.single_flight import SingleFlightCache
from services.common.settings import ServiceSettings

PAPER = "paper"

# One row per asked id, in order; an unknown id gets a row of NULLs.
READ_CONNECTIONS = """
SELECT c.id::text, c.user_id::text, c.exchange_id, c.api_url, c.sandbox, c.paper_account, c.credentials_enc,
       c.same_account_as::text
FROM unnest($1::uuid[]) WITH ORDINALITY AS asked(id, position)
LEFT JOIN exchange_connections c ON c.id = asked.id
ORDER BY asked.position
"""
# The exchange's own name of a connection's account, where it has none yet (migration 014).
RECORD_ACCOUNT_UID = (
    "UPDATE exchange_connections SET account_uid_ref = $2 WHERE id = $1::uuid AND account_uid_ref IS NULL"
)
# A connection the exchange names as another's account (migration 015); returns that connection.
RECORD_SAME_ACCOUNT = """
UPDATE exchange_connections c SET same_account_as = first.id
FROM exchange_connections first
WHERE c.id = $1::uuid AND first.account_uid_ref = $2 AND first.id <> c.id
RETURNING first.id::text
"""
# The connection's first connection to its account, if it still has one; named to its own user only.
SAME_ACCOUNT_AS = """
SELECT first.id::text, first.user_id = c.user_id AS same_user
FROM exchange_connections c JOIN exchange_connections first ON first.id = c.same_account_as
WHERE c.id = $1::uuid
"""
log = logging.getLogger("services.common.exchanges.accounts")
# What a process's listener of ConnectionChanged does (its AsyncAPI description).
KEY_REPLACED = "A connection's API key was replaced: drop the key and the client held for it."


class _Open:
    """An open exchange instance and how many ``use`` blocks hold it now."""

    __slots__ = ("exchange", "in_flight", "retired", "uid_recorded")

    def __init__(self, exchange: ExchangePort) -> None:
        self.exchange = exchange
        self.in_flight = 0
        self.uid_recorded = False
        self.retired = False  # forgotten while in use: closed once the last call on it ends


@dataclass(frozen=True)
class Connection:
    id: str
    user_id: str
    exchange_id: str
    api_url: str | None
    sandbox: bool
    paper_account: str | None
    credentials_enc: bytes | None
    same_account_as: str | None = None  # another connection to its account (migration 015)

    @property
    def market_key(self) -> tuple[str, str | None]:
        """Accounts with the same key see the same markets and prices."""
        return (self.exchange_id, self.api_url)


class UnknownConnection(RunFailed):
    code = "unknown_connection"


class KeyUnreadable(RunFailed):
    """The connection's stored key opens with none of the configured REBALANCER_SECRET_KEYS (a key
    removed before its connections were re-sealed): nothing on the account can be done until the
    key is configured again or the connection given a new API key."""

    code = "credentials_unreadable"


class SharedAccount(RunFailed):
    """A live run on a second connection to one exchange account (migration 015)."""

    code = "shared_account"


class ExchangeAccounts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ticker_ttl: float = 2.0,
        markets_ttl: float = 300.0,
        max_open: int = 2000,
    ) -> None:
        self.pool = pool
        # Least recently used first: a process serving many accounts keeps the busy ones open and
        # closes the rest, so memory stays bounded however many accounts pass through.
        self._connections: OrderedDict[str, Connection] = OrderedDict()
        self._open_instances: OrderedDict[str, _Open] = OrderedDict()
        self.max_open = max_open
        self._closing: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        # Runs of many new accounts starting together read their connections in one statement.
        self._read_connection: Coalescer[str, asyncpg.Record | None] = Coalescer(self._read_connections)
        self.prices_cache: SingleFlightCache[dict[str, Decimal]] = SingleFlightCache(ticker_ttl)
        self.markets_cache: SingleFlightCache[dict[str, Market]] = SingleFlightCache(markets_ttl)

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: ServiceSettings) -> ExchangeAccounts:
        return cls(pool, max_open=settings.exchange_clients_max)

    async def connection(self, connection_id: str) -> Connection:
        cached = self._connections.get(connection_id)
        if cached is not None:
            self._connections.move_to_end(connection_id)
            return cached
        row = await self._read_connection(connection_id)
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
            same_account_as=row["same_account_as"],
        )
        self._connections[connection_id] = conn
        while len(self._connections) > self.max_open:
            self._connections.popitem(last=False)
        return conn

    async def _read_connections(self, connection_ids: Sequence[str]) -> list[asyncpg.Record | None]:
        rows = await self.pool.fetch(READ_CONNECTIONS, connection_ids)
        return [row if row["id"] is not None else None for row in rows]

    @contextlib.asynccontextmanager
    async def use(self, connection_id: str) -> AsyncIterator[ExchangePort]:
        """The connection's exchange instance, held open until the block ends."""
        held = await self._hold(connection_id)
        try:
            yield held.exchange
        except KeyRefused:
            # Its owner may have replaced the key since it was read: the next call reads it again.
            self.forget(connection_id)
            raise
        finally:
            held.in_flight -= 1
            if held.retired and held.in_flight == 0:
                self._close_soon(held.exchange)

    def forget(self, connection_id: str) -> None:
        """Drop what this process holds of a connection (its row, its key, its exchange instance),
        so that the next call reads it again: its owner replaced its key, or the exchange refused
        the one held. An instance in use is closed once its calls end; none is cut short."""
        self._connections.pop(connection_id, None)
        held = self._open_instances.pop(connection_id, None)
        if held is None or held.retired:
            return
        held.retired = True
        if held.in_flight == 0:
            self._close_soon(held.exchange)

    async def record_account_uid(self, connection_id: str) -> None:
        """Once per open instance: the exchange's own id of the account, learned from a balance
        answer, is recorded for a connection that has none (made before migration 014, or not
        checked). Another connection already known by it trades the same account: this one is
        marked as its second connection (``same_account_as``), whose live runs are refused."""
        held = self._open_instances.get(connection_id)
        uid = held.exchange.account_uid if held is not None else None
        if held is None or held.uid_recorded or uid is None:
            return
        held.uid_recorded = True
        conn = await self.connection(connection_id)
        ref = exchange_account_uid_ref(conn.exchange_id, uid, api_url=conn.api_url, sandbox=conn.sandbox)
        try:
            await self.pool.execute(RECORD_ACCOUNT_UID, connection_id, ref)
        except asyncpg.UniqueViolationError:
            try:
                await self._record_same_account(conn, ref)
            except asyncpg.PostgresError as exc:  # unmarked, a live run would trade the account twice
                held.uid_recorded = False
                raise RetryLater(f"could not record that connection {connection_id} shares its account: {exc}") from exc
        except asyncpg.PostgresError as exc:  # bookkeeping: it never fails the run; tried again next time
            held.uid_recorded = False
            log.warning("could not record the account of connection %s: %s", connection_id, exc)

    async def _record_same_account(self, conn: Connection, uid_ref: str) -> None:
        first = await self.pool.fetchval(RECORD_SAME_ACCOUNT, conn.id, uid_ref)
        if first is None:
            return  # the other connection was deleted meanwhile; the next open instance records it
        self._remember(dataclasses.replace(conn, same_account_as=first))
        log.error(
            "exchange connections %s and %s trade the same %s account (the exchange names one account"
            " for both API keys): live runs on %s are refused until one of the two is deleted",
            first,
            conn.id,
            conn.exchange_id,
            conn.id,
        )

    async def refuse_live_run_on_shared_account(self, connection_id: str) -> None:
        """Raise SharedAccount when the connection is a second connection to its account. Live
        portfolios on both would undo each other's trades, and could trade at once: the scheduler's
        one-live-run rule knows connections, not accounts. Read again from the database when set,
        so deleting the other connection frees it at once; a free connection costs no query."""
        conn = await self.connection(connection_id)
        if conn.same_account_as is None:
            return
        first = await self.pool.fetchrow(SAME_ACCOUNT_AS, connection_id)
        if first is None:  # the other was deleted: this one is the account's, and takes its name next
            self._remember(dataclasses.replace(conn, same_account_as=None))
            held = self._open_instances.get(connection_id)
            if held is not None:
                held.uid_recorded = False
            return
        other = f"connection {first['id']}" if first["same_user"] else "another user's connection"
        raise SharedAccount(
            f"exchange connection {connection_id} trades the same {conn.exchange_id} account as {other}:"
            " a live run on it is refused, since live portfolios on both would undo each other's trades;"
            " delete one of the two connections (dry runs go on)"
        )

    def _remember(self, conn: Connection) -> None:
        if conn.id in self._connections:
            self._connections[conn.id] = conn

    async def _hold(self, connection_id: str) -> _Open:
        """The connection's instance, counted in flight before anything else can evict it."""
        held = self._open_instances.get(connection_id)
        if held is None:
            conn = await self.connection(connection_id)
            async with self._lock:
                held = self._open_instances.get(connection_id)
                if held is None:
                    held = self._open_instances[connection_id] = _Open(self._open(conn))
        self._open_instances.move_to_end(connection_id)
        held.in_flight += 1
        self._evict_idle()
        return held

    def _evict_idle(self) -> None:
        """Close the least recently used instances with nothing in flight, down to ``max_open``.
        Instances in use stay (they are at most the calls in flight) until a later eviction.

        The scan stops at the last instance it closes: a busy process is over ``max_open`` on
        every new account's call, and copying all ``max_open`` entries each time cost the
        executor 2.6 % of its CPU at 4,000 accounts."""
        excess = len(self._open_instances) - self.max_open
        if excess <= 0:
            return
        idle = (cid for cid, held in self._open_instances.items() if held.in_flight == 0)
        for connection_id in list(itertools.islice(idle, excess)):  # listed before any is removed
            self._close_soon(self._open_instances.pop(connection_id).exchange)

    def _close_soon(self, exchange: ExchangePort) -> None:
        task = asyncio.create_task(self._close_quietly(exchange))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_quietly(exchange: ExchangePort) -> None:
        with contextlib.suppress(Exception):  # closing is best effort: nothing is in flight on it
            await exchange.close()

    @property
    def open_count(self) -> int:
        return len(self._open_instances)

    def _open(self, conn: Connection) -> ExchangePort:
        if conn.exchange_id == PAPER:
            from services.common.exchanges.paper import PaperConfig, PaperExchange

            return PaperExchange(self.pool, conn.paper_account or conn.id, config=PaperConfig.from_env())
        from services.common.exchanges.ccxt_adapter import CcxtExchange
        from services.common.secrets import CredentialsUnreadable, SecretBox

        try:
            credentials = SecretBox.from_env().open(conn.credentials_enc) if conn.credentials_enc else None
        except CredentialsUnreadable as exc:
            raise KeyUnreadable(f"exchange connection {conn.id}: {exc}") from None
        return CcxtExchange(conn.exchange_id, credentials, api_url=conn.api_url, sandbox=conn.sandbox)

    async def prices(self, connection_id: str) -> dict[str, Decimal]:
        """Last price of every market of the connection's exchange, shared across accounts."""
        conn = await self.connection(connection_id)
        async with self.use(connection_id) as exchange:
            return await self.prices_cache.get(conn.market_key, lambda: exchange.fetch_prices(None))

    async def markets(self, connection_id: str) -> dict[str, Market]:
        conn = await self.connection(connection_id)
        async with self.use(connection_id) as exchange:
            return await self.markets_cache.get(conn.market_key, exchange.load_markets)

    async def close(self) -> None:
        """Close every instance (at shutdown, when no call is in flight any more)."""
        instances = [held.exchange for held in self._open_instances.values()]
        self._open_instances.clear()
        # Together: ccxt waits a quarter of a second in each close, so a process holding 1,000
        # accounts would take four minutes to stop one by one, past any grace period.
        await asyncio.gather(*(self._close_quietly(exchange) for exchange in instances))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
