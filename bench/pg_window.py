"""PostgreSQL's counters over the measured window, exactly: the services' transactions and WAL,
without the benchmark's own reads.

A backend reports its counts to the server's statistics at most once a second (an idle one
within 10 s), so a snapshot taken while the services run misses what they have not reported yet.
The window therefore ends only when every service's backend has exited (a backend reports
everything as it exits), and its counters are read from another database (``pg_stat_database``
and ``pg_stat_wal`` are the whole server's) so that reading them adds nothing. The benchmark's
own reads in the window go through one connection, ``OwnReads``, which counts its transactions and
reports them before each snapshot (``pg_stat_force_next_flush``, PostgreSQL 15+), so they can be
taken out of the database's count. At the start, the services' connections stay open, so the
window opens only once everything done before it (the warm-up) has been reported:
``REPORTED_WITHIN_S`` after it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement

from bench.pipeline_stats import counted_since

RECORDED = "SELECT count(*) FROM rebalance_runs WHERE status <> 'running'"
# A backend reports nothing, its transaction count included, until one of its transactions has
# touched a table: the report reads one as well.
REPORT = "SELECT pg_stat_force_next_flush(), count(*) FROM rebalance_runs"
FLUSH_SUPPORTED_FROM = 150000  # pg_stat_force_next_flush()
# Every backend reports within this long of its last transaction (PGSTAT_IDLE_INTERVAL is 10 s).
REPORTED_WITHIN_S = 10.5


@dataclass(frozen=True)
class Counters:
    transactions: int  # committed or rolled back in the benchmark's database
    stream_messages: int
    wal_records: int  # the server's (embedded: only this benchmark writes)
    wal_bytes: int
    wal_fpi: int

    def __sub__(self, before: Counters) -> Counters:
        return counted_since(self, before)


class OwnReads:
    """The benchmark's reads during the window: one connection whose transactions are counted
    (each read is one prepared statement, so one transaction) and reported on demand."""

    def __init__(self, conn: asyncpg.Connection, recorded: PreparedStatement, can_report: bool) -> None:
        self._conn = conn
        self._recorded = recorded
        self.can_report = can_report  # False before PostgreSQL 15: the transaction count is unknown
        self.transactions = 0  # since the last ``start_counting``

    @classmethod
    async def open(cls, dsn: str) -> OwnReads:
        conn = await asyncpg.connect(dsn)
        can_report = int(await conn.fetchval("SHOW server_version_num")) >= FLUSH_SUPPORTED_FROM
        return cls(conn, await conn.prepare(RECORDED), can_report)

    @property
    def connection(self) -> asyncpg.Connection:
        """For snapshots taken before ``start_counting``."""
        return self._conn

    @property
    def pid(self) -> int:
        return int(self._conn.get_server_pid())

    async def recorded(self) -> int:
        """How many runs the ledger has finished recording."""
        self.transactions += 1
        return int(await self._recorded.fetchval())

    async def report(self) -> None:
        """Make this connection's counts (this call's transaction included) visible to every
        snapshot taken after it returns: PostgreSQL reports them before it answers."""
        if self.can_report:
            self.transactions += 1
            await self._conn.execute(REPORT)

    async def start_counting(self) -> None:
        await self.report()
        self.transactions = 0

    async def close(self) -> None:
        await self._conn.close()


async def read_counters(admin: asyncpg.Connection, database: str, stream_messages: int) -> Counters:
    row = await admin.fetchrow(
        "SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1) AS xacts,"
        " wal_records, wal_bytes, wal_fpi FROM pg_stat_wal", database)
    return Counters(int(row["xacts"]), stream_messages, int(row["wal_records"]), int(row["wal_bytes"]),
                    int(row["wal_fpi"]))


async def wait_until_gone(admin: asyncpg.Connection, database: str, *, keep_pid: int,
                          application_name: str | None = None, timeout: float = 30.0) -> None:
    """Until no backend is connected to ``database`` but ``keep_pid`` (of those named
    ``application_name``, if given). Each one that left has reported its statistics: a backend
    reports them before it leaves ``pg_stat_activity``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2"
            " AND ($3::text IS NULL OR application_name = $3)", database, keep_pid, application_name):
        if loop.time() > deadline:
            raise TimeoutError(f"connections to {database} still open after {timeout:.0f} s")
        await asyncio.sleep(0.05)
