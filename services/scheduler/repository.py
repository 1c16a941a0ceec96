"""The scheduler's SQL (asyncpg). Every statement here is one round trip for a whole batch.

Claims are the heart of "exactly one run": a row is claimed by setting ``active_run_id`` in an
UPDATE whose subquery locks with ``FOR UPDATE SKIP LOCKED``, so concurrent replicas never claim
the same row, and a claimed row leaves the partial due index (``active_run_id IS NULL``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.common.live_portfolios import first_live_beside


def _live_portfolio_before(live: str) -> str:
    """The claim's column naming the live portfolio its account belongs to (name and id), if any,
    and null unless its run is live (the SQL condition ``live``). Of several live portfolios on
    one account (made before the API refused a second) the oldest keeps it; a dry-run portfolio
    triggered live beside a live one is refused too (the API answers that with a 422)."""
    return (
        f"CASE WHEN {live} THEN (SELECT ARRAY[o.name, o.id::text] {first_live_beside(or_any_when='p.dry_run')})"
        " END AS live_portfolio_before"
    )


# Columns a claim returns: the strategy snapshot, the claim itself, and whether it may trade.
_CLAIM_RETURNING = """
    p.id, p.user_id, p.connection_id, p.name, p.target_weights::text AS target_weights,
    p.quote_currency, p.rebalance_threshold, p.threshold_kind, p.rebalance_mode,
    p.always_rebalance, p.max_orders_per_rebalance, p.dry_run, p.leave_alone, p.cash_reserve,
    p.order_type, p.limit_timeout_seconds, p.rebalance_interval, p.cron, p.timezone, p.created_at,
    c.exchange_id, p.active_run_id, p.active_run_started_at, p.active_run_trigger,
    p.active_run_dry_run, due.due_at, due.live_portfolio_before
"""

ONE_LIVE_RUN_PER_ACCOUNT = "portfolios_one_live_run_per_connection"  # migration 010's unique index

# One live run per exchange account at a time (migration 010's unique index backs this up when two
# replicas claim for one account at once): a live run valued while another trades the same account
# would plan against half-traded balances and trade part of the same drift again.
_ACCOUNT_HAS_LIVE_RUN = """EXISTS (
        SELECT 1 FROM portfolios o
        WHERE o.connection_id = p.connection_id AND o.active_run_id IS NOT NULL AND NOT o.active_run_dry_run)"""

# Scheduled claims: the due rows in due order, locked without waiting on other replicas' locks.
# A live row of an account with a live run waits for it; of two live rows of one account in a
# batch, one is claimed and the other waits: the account's oldest live portfolio before one whose
# run will fail at once (live_portfolio_before), else the one due first. ``examined`` (rows
# locked) tells the check whether more due rows may follow. The trigger and dry-run rules mirror
# runs.trigger_of / runs.effective_dry_run.
CLAIM_DUE_SQL = f"""
WITH due AS (
    SELECT p.id, p.connection_id, p.next_rebalance_at AS due_at, p.dry_run OR $4 AS dry,
           {_live_portfolio_before("NOT (p.dry_run OR $4)")}
    FROM portfolios p
    WHERE p.rebalance_enabled AND p.active_run_id IS NULL AND p.next_rebalance_at <= $1
      AND (p.dry_run OR $4 OR NOT {_ACCOUNT_HAS_LIVE_RUN})
    ORDER BY p.next_rebalance_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id, due_at, live_portfolio_before FROM (
        SELECT id, due_at, dry, live_portfolio_before,
               row_number() OVER (PARTITION BY connection_id, dry
                                  ORDER BY live_portfolio_before IS NOT NULL, due_at, id) AS nth
        FROM due
    ) ranked
    WHERE dry OR nth = 1
), claimed AS (
    UPDATE portfolios p
    SET active_run_id = gen_random_uuid(),
        lease_expires_at = $1 + $2::interval,
        active_run_started_at = $1,
        active_run_trigger = CASE WHEN p.rebalance_interval = 'threshold' THEN 'threshold' ELSE 'scheduler' END,
        active_run_dry_run = p.dry_run OR $4
    FROM chosen AS due, exchange_connections c
    WHERE p.id = due.id AND c.id = p.connection_id
    RETURNING {_CLAIM_RETURNING}
)
SELECT claimed.*, (SELECT count(*) FROM due) AS examined FROM claimed
"""

# A manual claim: the checks (no active run; for a live run, none on the account either) and the
# claim are one statement, so two requests racing for one portfolio cannot both win. Enabled or
# not: a manual trigger runs either.
CLAIM_ONE_SQL = f"""
WITH due AS (
    SELECT p.id, $2::timestamptz AS due_at, {_live_portfolio_before("NOT (COALESCE($5, p.dry_run) OR $6)")}
    FROM portfolios p WHERE p.id = $1::uuid
)
UPDATE portfolios p
SET active_run_id = COALESCE($7::uuid, gen_random_uuid()),
    lease_expires_at = $2 + $3::interval,
    active_run_started_at = $2,
    active_run_trigger = $4,
    active_run_dry_run = COALESCE($5, p.dry_run) OR $6
FROM due, exchange_connections c
WHERE p.id = due.id AND p.active_run_id IS NULL AND c.id = p.connection_id
  AND (COALESCE($5, p.dry_run) OR $6 OR NOT {_ACCOUNT_HAS_LIVE_RUN})
RETURNING {_CLAIM_RETURNING}
"""

_SCHEDULE_COLUMNS = (
    "id, user_id, name, quote_currency, rebalance_interval, cron, timezone, created_at, active_run_id,"
    " active_run_started_at, active_run_trigger, active_run_dry_run"
)


@dataclass(frozen=True)
class DueClaims:
    rows: list[asyncpg.Record]  # the claimed rows
    examined: int  # due rows locked; fewer than the batch means no more were due


async def claim_due(
    conn: asyncpg.Connection, now: datetime, lease: timedelta, batch: int, forced_dry_run: bool
) -> DueClaims:
    """Claim up to ``batch`` due rows. A unique violation (asyncpg.UniqueViolationError) means
    another replica claimed a live run on one of these accounts first: the caller's transaction
    is void, and claiming again skips that account."""
    rows: list[asyncpg.Record] = await conn.fetch(CLAIM_DUE_SQL, now, lease, batch, forced_dry_run)
    return DueClaims(rows, int(rows[0]["examined"]) if rows else 0)


async def claim_one(
    conn: asyncpg.Connection,
    portfolio_id: str,
    now: datetime,
    lease: timedelta,
    triggered_by: str,
    requested_dry_run: bool | None,
    forced_dry_run: bool,
    run_id: str | None = None,
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        CLAIM_ONE_SQL, portfolio_id, now, lease, triggered_by, requested_dry_run, forced_dry_run, run_id
    )
    return row


async def portfolio_claim(conn: asyncpg.Connection, portfolio_id: str) -> asyncpg.Record | None:
    """The portfolio's current claim and the live run active on its account, if any (to explain a
    refused trigger), or None when the portfolio is unknown."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT p.id, p.user_id, p.name, p.active_run_id, p.active_run_started_at,"
        " o.name AS account_run_portfolio, o.active_run_id AS account_run_id"
        " FROM portfolios p LEFT JOIN portfolios o ON o.connection_id = p.connection_id AND o.id <> p.id"
        "  AND o.active_run_id IS NOT NULL AND NOT o.active_run_dry_run"
        " WHERE p.id = $1",
        portfolio_id,
    )
    return row


async def shared_live_accounts(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """Exchange connections with more than one live portfolio (made before the API refused them)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT connection_id, array_agg(name || ' (' || id || ')' ORDER BY created_at, id) AS portfolios"
        " FROM portfolios WHERE NOT dry_run GROUP BY connection_id HAVING count(*) > 1 ORDER BY connection_id"
    )
    return rows


async def lock_for_completion(conn: asyncpg.Connection, portfolio_ids: Sequence[str]) -> list[asyncpg.Record]:
    """The schedule and claim of these portfolios, locked for the completion's update."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_SCHEDULE_COLUMNS} FROM portfolios WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
        list(portfolio_ids),
    )
    return rows


async def lock_expired_leases(conn: asyncpg.Connection, now: datetime, batch: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_SCHEDULE_COLUMNS} FROM portfolios"
        " WHERE active_run_id IS NOT NULL AND lease_expires_at <= $1"
        " ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        batch,
    )
    return rows


async def lock_unscheduled(conn: asyncpg.Connection, batch: int) -> list[asyncpg.Record]:
    """Enabled rows whose schedule changed (next_rebalance_at NULL): they need a next due time."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_SCHEDULE_COLUMNS} FROM portfolios"
        " WHERE next_rebalance_at IS NULL AND rebalance_enabled AND active_run_id IS NULL"
        " LIMIT $1 FOR UPDATE SKIP LOCKED",
        batch,
    )
    return rows


async def record_expired(conn: asyncpg.Connection, runs: Sequence[tuple[str, str]]) -> None:
    """Runs (run id, portfolio id) failed for their lease: the executor places no more of their orders."""
    if runs:
        await conn.execute(
            "INSERT INTO expired_runs (run_id, portfolio_id)"
            " SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT (run_id) DO NOTHING",
            [run_id for run_id, _ in runs],
            [portfolio_id for _, portfolio_id in runs],
        )


@dataclass(frozen=True)
class Release:
    """End of a claim: the next due time, and whether the run counts as a rebalance."""

    portfolio_id: str
    run_id: str
    next_at: datetime | None
    rebalanced_at: datetime | None  # set last_rebalanced_at (succeeded or partial runs)


async def release_claims(conn: asyncpg.Connection, releases: Sequence[Release]) -> set[str]:
    """Free the claims that are still the ones named (a newer claim is never touched)."""
    if not releases:
        return set()
    rows = await conn.fetch(
        """
        UPDATE portfolios p
        SET active_run_id = NULL, lease_expires_at = NULL, active_run_started_at = NULL,
            active_run_trigger = NULL, active_run_dry_run = NULL,
            next_rebalance_at = r.next_at,
            last_rebalanced_at = COALESCE(r.rebalanced_at, p.last_rebalanced_at)
        FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[])
             AS r(id, run_id, next_at, rebalanced_at)
        WHERE p.id = r.id AND p.active_run_id = r.run_id
        RETURNING p.id
        """,
        [r.portfolio_id for r in releases],
        [r.run_id for r in releases],
        [r.next_at for r in releases],
        [r.rebalanced_at for r in releases],
    )
    return {str(r["id"]) for r in rows}


async def set_next_due(conn: asyncpg.Connection, next_by_id: Sequence[tuple[str, datetime]]) -> None:
    if next_by_id:
        await conn.execute(
            "UPDATE portfolios p SET next_rebalance_at = r.next_at"
            " FROM unnest($1::uuid[], $2::timestamptz[]) AS r(id, next_at)"
            " WHERE p.id = r.id AND p.next_rebalance_at IS NULL",
            [i for i, _ in next_by_id],
            [n for _, n in next_by_id],
        )


async def count_due(conn: asyncpg.Connection | asyncpg.Pool, now: datetime) -> int:
    """Due and unclaimed rows: an index-only count over the partial due index."""
    value = await conn.fetchval(
        "SELECT count(*) FROM portfolios"
        " WHERE rebalance_enabled AND active_run_id IS NULL AND next_rebalance_at <= $1",
        now,
    )
    return int(value)


async def count_waiting_for_account(
    conn: asyncpg.Connection | asyncpg.Pool, now: datetime, forced_dry_run: bool
) -> int:
    """Live rows due and unclaimed because another live run trades their account."""
    value = await conn.fetchval(
        "SELECT count(*) FROM portfolios p"
        " WHERE p.rebalance_enabled AND p.active_run_id IS NULL AND p.next_rebalance_at <= $1"
        f" AND NOT (p.dry_run OR $2) AND {_ACCOUNT_HAS_LIVE_RUN}",
        now,
        forced_dry_run,
    )
    return int(value)


async def active_runs(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[int, datetime | None]:
    """How many runs are active, and when the oldest started."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(active_run_started_at) AS oldest FROM portfolios"
        " WHERE active_run_id IS NOT NULL"
    )
    assert row is not None
    return int(row["n"]), row["oldest"]


async def record_refusal(
    conn: asyncpg.Connection,
    *,
    message_id: str,
    portfolio_id: str | None,
    user_id: str | None,
    run_id: str | None,
    description: str,
    details: str,
) -> None:
    """An activity row for a refused trigger; the request's message id makes it write-once."""
    await conn.execute(
        "INSERT INTO activity_log"
        " (message_id, user_id, portfolio_id, run_id, event_type, description, details)"
        " VALUES ($1, $2, $3, $4, 'trigger_refused', $5, $6::text::jsonb)"
        " ON CONFLICT (message_id) DO NOTHING",
        message_id,
        user_id,
        portfolio_id,
        run_id,
        description,
        details,
    )


# ---------------------------------------------------------------------- shared control state
@dataclass(frozen=True)
class SchedulerState:
    is_running: bool
    check_interval: str
    dry_run_mode: bool


def _state(row: asyncpg.Record) -> SchedulerState:
    return SchedulerState(row["is_running"], row["check_interval"], row["dry_run_mode"])


async def ensure_state(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    check_interval: str,
    dry_run_mode: bool,
    start: bool,
    replica: str,
) -> SchedulerState:
    """Create the control row from the environment if it is missing (a stored runtime config wins
    over the environment); auto-start starts it; SCHEDULER_DRY_RUN=true always forces dry-run."""
    row = await conn.fetchrow(
        """
        INSERT INTO scheduler_state (id, is_running, check_interval, dry_run_mode, updated_by)
        VALUES (1, $1, $2, $3, $4)
        ON CONFLICT (id) DO UPDATE SET
            is_running = scheduler_state.is_running OR $1,
            dry_run_mode = scheduler_state.dry_run_mode OR $3,
            updated_at = CASE WHEN ($1 AND NOT scheduler_state.is_running)
                               OR ($3 AND NOT scheduler_state.dry_run_mode)
                         THEN now() ELSE scheduler_state.updated_at END
        RETURNING is_running, check_interval, dry_run_mode
        """,
        start,
        check_interval,
        dry_run_mode,
        replica,
    )
    assert row is not None
    return _state(row)


async def load_state(conn: asyncpg.Connection | asyncpg.Pool) -> SchedulerState | None:
    row = await conn.fetchrow(
        "SELECT is_running, check_interval, dry_run_mode FROM scheduler_state WHERE id = 1"
    )
    return None if row is None else _state(row)


async def update_state(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    updated_by: str,
    is_running: bool | None = None,
    check_interval: str | None = None,
    dry_run_mode: bool | None = None,
) -> SchedulerState | None:
    row = await conn.fetchrow(
        "UPDATE scheduler_state SET is_running = COALESCE($1, is_running),"
        " check_interval = COALESCE($2, check_interval), dry_run_mode = COALESCE($3, dry_run_mode),"
        " updated_at = now(), updated_by = $4 WHERE id = 1"
        " RETURNING is_running, check_interval, dry_run_mode",
        is_running,
        check_interval,
        dry_run_mode,
        updated_by,
    )
    return None if row is None else _state(row)


async def record_check(
    conn: asyncpg.Connection | asyncpg.Pool, *, at: datetime, elapsed_ms: int, due: int
) -> None:
    await conn.execute(
        "UPDATE scheduler_state SET last_check_at = $1, last_check_ms = $2, last_check_due = $3 WHERE id = 1",
        at,
        elapsed_ms,
        due,
    )


async def heartbeat(conn: asyncpg.Connection | asyncpg.Pool, replica: str, host: str, enabled: bool) -> None:
    await conn.execute(
        "INSERT INTO scheduler_replicas (replica_id, host, enabled) VALUES ($1, $2, $3)"
        " ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now(), enabled = EXCLUDED.enabled",
        replica,
        host,
        enabled,
    )


async def forget_replica(conn: asyncpg.Connection | asyncpg.Pool, replica: str) -> None:
    await conn.execute("DELETE FROM scheduler_replicas WHERE replica_id = $1", replica)


def as_text(value: Any) -> str | None:
    return None if value is None else str(value)
