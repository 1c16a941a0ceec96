"""PostgreSQL access shared by the services: the pool, the inbox, the outbox, dead letters.

The inbox and outbox are what make delivery safe: a consumer records each message id in the
same transaction as its effect (a redelivery then changes nothing), and an event that must
follow a database write is stored in that write's transaction and relayed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now": wait and retry, never dead-letter.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.PostgresConnectionError,
)


# Planner costs for data on SSD or in memory (PostgreSQL's default of 4 models spinning disks).
# It also keeps cached plans on keys: asyncpg prepares every statement and PostgreSQL caches a
# generic plan after five runs; made while a table is small (a fresh deployment, before autovacuum
# first analyzes it), the default's plan for a join on an unnest() of keys scans the whole table
# and keeps doing so as the table grows (the benchmark measured 2-5 ms per call at 40,000 rows).
# Set once per connection rather than as a startup parameter, which poolers such as PgBouncer
# refuse.
PLANNER_SETTINGS = "SET random_page_cost = 1.1"


class RawJson(str):
    """JSON text serialized already (by pydantic, in Rust): json and jsonb parameters send it as
    it is instead of encoding a Python structure again."""


def _encode_json(value: object) -> str:
    return value if isinstance(value, RawJson) else json.dumps(value)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=_encode_json, decoder=json.loads, schema="pg_catalog")
    # Numerics travel as text: asyncpg's binary codec takes Decimals apart digit by digit in Python
    # (about 2 us a value, measured), while str() and Decimal() are C; every order, balance and
    # trade row carries several. The values are the same either way, scale included.
    await conn.set_type_codec("numeric", encoder=str, decoder=Decimal, schema="pg_catalog", format="text")
    await conn.execute(PLANNER_SETTINGS)


class TransactionScopedConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without ``RESET ALL``/``UNLISTEN``/``CLOSE ALL``: the services
    keep no session state on pooled connections (settings are ``SET LOCAL``/``set_config(...,
    true)``, advisory locks are taken on dedicated connections, nothing LISTENs), so that statement
    would be a wasted round trip on every release. The one session setting, ``PLANNER_SETTINGS``,
    is the same on every connection and kept on purpose. asyncpg still rolls back a transaction
    left open before the connection is reused."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    wait_seconds: float = 60.0,
) -> asyncpg.Pool:
    """A pool with JSON codecs; waits (with back-off) for the database to answer at start-up."""
    delay = 0.2
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                command_timeout=60,
                connection_class=TransactionScopedConnection,
            )
            assert pool is not None
            return pool
        except TRANSIENT_DB_ERRORS as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("database not ready (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def rows_affected(status: str) -> int:
    """The row count of a command tag as asyncpg's ``execute`` returns it ("UPDATE 3", "INSERT 0 2")."""
    return int(status.rpartition(" ")[2])


async def claim_inbox(conn: asyncpg.Connection, consumer: str, message_ids: Sequence[str]) -> set[str]:
    """Record message ids as processed by ``consumer``; return those not seen before.

    Call inside the transaction that applies the effects: if it rolls back, the ids are not
    recorded either, and a redelivery is processed again.
    """
    if not message_ids:
        return set()
    rows = await conn.fetch(
        "INSERT INTO inbox (consumer, message_id) SELECT $1, unnest($2::text[])"
        " ON CONFLICT DO NOTHING RETURNING message_id",
        consumer,
        list(message_ids),
    )
    return {r["message_id"] for r in rows}


@dataclass(frozen=True)
class OutboxMessage:
    subject: str
    message_id: str
    payload: bytes


async def add_to_outbox(conn: asyncpg.Connection, producer: str, messages: Iterable[OutboxMessage]) -> None:
    """Store events in the caller's transaction; ``OutboxRelay`` publishes them after commit."""
    rows = [(producer, m.subject, m.message_id, m.payload) for m in messages]
    if rows:
        await conn.executemany(
            "INSERT INTO outbox (producer, subject, message_id, payload) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (message_id) DO NOTHING",
            rows,
        )


async def record_dead_letter(
    pool: asyncpg.Pool,
    *,
    consumer: str,
    subject: str,
    message_id: str | None,
    reason: str,
    payload: bytes,
    deliveries: int,
) -> None:
    await pool.execute(
        "INSERT INTO dead_letters (consumer, subject, message_id, reason, payload, deliveries)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        consumer,
        subject,
        message_id,
        reason[:2000],
        payload,
        deliveries,
    )
