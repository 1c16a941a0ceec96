"""Where PostgreSQL's work goes in a benchmark run: rows written per table (and the index entries
they cost), and, where ``pg_stat_statements`` is loaded, each statement's time, calls and WAL.

Both are differences of the server's cumulative counters between two snapshots, divided by the
portfolios run. The formatting is pure; ``read_*`` are the two queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from bench.pipeline_stats import counted_since

STATEMENTS_LIBRARY = "pg_stat_statements"
STATEMENT_TEXT_WIDTH = 100


@dataclass(frozen=True)
class TableWrites:
    """A table's cumulative write counters (``pg_stat_user_tables``) and how many indexes it has."""

    table: str
    inserted: int
    updated: int
    hot_updated: int  # updates that wrote no index entry (heap-only tuples)
    deleted: int
    indexes: int

    @property
    def index_entries(self) -> int:
        """At most this many index entries were written: every index for each insert and each
        update that was not HOT (a partial index skips rows outside its predicate)."""
        return (self.inserted + self.updated - self.hot_updated) * self.indexes

    @property
    def rows_written(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class StatementUse:
    """A statement's cumulative figures (``pg_stat_statements``), by its query id."""

    query_id: int
    calls: int
    exec_ms: float
    rows: int
    wal_records: int
    text: str


def table_writes_since(before: Mapping[str, TableWrites], after: Mapping[str, TableWrites]) -> list[TableWrites]:
    """Each table's writes between the snapshots, most rows first; tables not written are left out."""
    spent = [counted_since(now, before.get(name), keep=("table", "indexes")) for name, now in after.items()]
    return sorted((t for t in spent if t.rows_written), key=lambda t: (-t.rows_written, t.table))


def statements_since(before: Mapping[int, StatementUse], after: Mapping[int, StatementUse]) -> list[StatementUse]:
    """Each statement's use between the snapshots, most execution time first; unused ones left out."""
    spent = [counted_since(now, before.get(query_id), keep=("query_id", "text")) for query_id, now in after.items()]
    return sorted((s for s in spent if s.calls), key=lambda s: (-s.exec_ms, s.query_id))


def table_writes_table(writes: Sequence[TableWrites], portfolios: int) -> list[str]:
    per = max(portfolios, 1)
    head = (f"{'table (per portfolio)':<24}{'inserted':>10}{'updated':>9}{'of them HOT':>13}{'deleted':>9}"
            f"{'indexes':>9}{'index entries <=':>18}")

    def row(name: str, inserted: int, updated: int, hot: int, deleted: int, indexes: str, entries: int) -> str:
        return (f"{name:<24}{inserted / per:>10.1f}{updated / per:>9.1f}{hot / per:>13.1f}{deleted / per:>9.1f}"
                f"{indexes:>9}{entries / per:>18.1f}")

    lines = [head, "-" * len(head)]
    lines += [row(t.table, t.inserted, t.updated, t.hot_updated, t.deleted, str(t.indexes), t.index_entries)
              for t in writes]
    lines.append(row("all", sum(t.inserted for t in writes), sum(t.updated for t in writes),
                     sum(t.hot_updated for t in writes), sum(t.deleted for t in writes), "",
                     sum(t.index_entries for t in writes)))
    return lines


def statements_table(uses: Sequence[StatementUse], portfolios: int, top: int = 12) -> list[str]:
    per = max(portfolios, 1)
    total_ms = sum(s.exec_ms for s in uses)
    title = "statement (per portfolio)"
    head = f"{'calls':>8}{'exec ms':>9}{'share':>7}{'rows':>8}{'WAL':>8}  {title}"
    lines = [head, "-" * (len(head) - len(title) + STATEMENT_TEXT_WIDTH)]
    for s in uses[:top]:
        share = s.exec_ms / total_ms if total_ms > 0 else 0.0
        lines.append(f"{s.calls / per:>8.2f}{s.exec_ms / per:>9.3f}{share:>7.0%}{s.rows / per:>8.1f}"
                     f"{s.wal_records / per:>8.1f}  {_one_line(s.text)}")
    rest = uses[top:]
    if rest:
        rest_ms = sum(s.exec_ms for s in rest)
        lines.append(f"{sum(s.calls for s in rest) / per:>8.2f}{rest_ms / per:>9.3f}"
                     f"{rest_ms / total_ms if total_ms > 0 else 0.0:>7.0%}"
                     f"{sum(s.rows for s in rest) / per:>8.1f}{sum(s.wal_records for s in rest) / per:>8.1f}"
                     f"  ({len(rest)} other statements)")
    lines.append(f"{'':>8}{total_ms / per:>9.3f}{'100%':>7}{'':>8}{'':>8}  all statements (execution time: "
                 "excludes parsing, commits and the protocol)")
    return lines


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= STATEMENT_TEXT_WIDTH else flat[: STATEMENT_TEXT_WIDTH - 3] + "..."


# ------------------------------------------------------------------------------------------ reads

TABLE_WRITES = """
SELECT t.relname AS table, t.n_tup_ins, t.n_tup_upd, t.n_tup_hot_upd, t.n_tup_del,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid) AS indexes
FROM pg_stat_user_tables t
"""

STATEMENT_USE = f"""
SELECT queryid, calls, total_exec_time, rows, wal_records, query FROM {STATEMENTS_LIBRARY}
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL
"""


async def read_table_writes(db: asyncpg.Pool | asyncpg.Connection) -> dict[str, TableWrites]:
    rows = await db.fetch(TABLE_WRITES)
    return {r["table"]: TableWrites(r["table"], r["n_tup_ins"], r["n_tup_upd"], r["n_tup_hot_upd"], r["n_tup_del"],
                                    r["indexes"]) for r in rows}


async def enable_statements(pool: asyncpg.Pool) -> str | None:
    """Make ``pg_stat_statements`` readable in this database; None if it is, else why not."""
    try:
        await pool.execute(f"CREATE EXTENSION IF NOT EXISTS {STATEMENTS_LIBRARY}")
        await pool.fetchval(f"SELECT count(*) FROM {STATEMENTS_LIBRARY}")
    except asyncpg.PostgresError as error:
        return f"{STATEMENTS_LIBRARY} unavailable: {error}"
    return None


async def read_statements(db: asyncpg.Pool | asyncpg.Connection) -> dict[int, StatementUse]:
    rows = await db.fetch(STATEMENT_USE)
    return {r["queryid"]: StatementUse(r["queryid"], r["calls"], r["total_exec_time"], r["rows"], r["wal_records"],
                                       r["query"]) for r in rows}
