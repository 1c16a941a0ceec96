"""Order intents in PostgreSQL: written before the exchange is called, so that after any crash
the executor knows which orders may exist and looks them up instead of sending them again.

States: intent (stored, never sent) -> sending (a request may have reached the exchange) ->
open (resting on the book) -> filled | rejected | failed | canceled | abandoned (final).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from contracts.v1 import PlanCreated
from services.common.db import OutboxMessage, rows_affected
from services.common.exchanges.port import OrderResult

# abandoned: its owner gave up on a leg of unknown outcome (services.executor.abandon); it is
# never looked up or sent again.
FINAL_STATES = frozenset({"filled", "rejected", "failed", "canceled", "abandoned"})


@dataclass(frozen=True)
class Intent:
    client_order_id: str
    leg: int
    state: str
    amount: Decimal
    result: dict[str, Any] | None
    # Stored by this very call: a 'sending' intent that is fresh was never sent yet (it was
    # stored as about to be sent), while an older one may have been and is looked up first.
    fresh: bool = False
    # Seconds since the leg was last sent (or about to be), when it was read: infinite for a leg
    # sent before migration 012 recorded it.
    sent_ago: float = 0.0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def may_exist(self) -> bool:
        """A request for this leg may have reached the exchange, and its outcome is not recorded:
        it is looked up, never sent blind, and never recorded as not placed."""
        return self.state == "open" or (self.state == "sending" and not self.fresh)


# Several runs' intents in one statement: each leg names its run by position in the run arrays.
ENSURE_INTENTS = """
WITH runs AS (
    SELECT * FROM unnest($8::uuid[], $9::uuid[], $10::uuid[], $11::uuid[]) WITH ORDINALITY
        AS r(run_id, portfolio_id, user_id, connection_id, run)
), wanted AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::numeric[],
                         $12::boolean[], $13::int[])
        AS w(client_order_id, leg, symbol, side, amount, order_type, limit_price, sending, run)
), inserted AS (
    INSERT INTO order_intents (client_order_id, run_id, leg, portfolio_id, user_id, connection_id,
                               symbol, side, amount, order_type, limit_price, state, attempts, sent_at)
    SELECT w.client_order_id, r.run_id, w.leg, r.portfolio_id, r.user_id, r.connection_id, w.symbol, w.side,
           w.amount, w.order_type, w.limit_price,
           CASE WHEN w.sending THEN 'sending' ELSE 'intent' END,
           CASE WHEN w.sending THEN 1 ELSE 0 END,
           CASE WHEN w.sending THEN now() END
    FROM wanted w JOIN runs r ON r.run = w.run
    ON CONFLICT (client_order_id) DO NOTHING
    RETURNING run_id, client_order_id, leg, state, amount, result
)
SELECT run_id::text, client_order_id, leg, state, amount, result, true AS fresh, 0::float8 AS sent_ago
FROM inserted
UNION ALL
SELECT i.run_id::text, i.client_order_id, i.leg, i.state, i.amount, i.result, false,
       COALESCE(EXTRACT(epoch FROM now() - i.sent_at), 'Infinity')::float8
FROM order_intents i
WHERE i.run_id = ANY($8::uuid[]) AND i.client_order_id NOT IN (SELECT client_order_id FROM inserted)
"""


@dataclass(frozen=True)
class WantedIntents:
    """A run's legs to store: their client order ids by leg, and the legs about to be sent in one
    batch (leg -> amount), stored as 'sending' with that amount to save marking them separately."""

    plan: PlanCreated
    client_ids: dict[int, str]
    sending: dict[int, Decimal] = field(default_factory=dict)


async def ensure_intents_many(pool: asyncpg.Pool, runs: Sequence[WantedIntents]) -> list[dict[int, Intent]]:
    """Store an intent per leg of each run (once) and return every leg's current intent: several
    runs in one statement, a result per run, in order.

    A run's legs in ``sending`` (leg -> amount) are about to be sent in one batch: they are stored
    as 'sending' with that amount. Legs already stored (a resumed run) keep what they have.
    """
    run_ids = [str(uuid.UUID(wanted.plan.run_id)) for wanted in runs]
    if len(set(run_ids)) < len(run_ids):
        # A run's "fresh" legs would be claimed by both of its entries: the caller stores them
        # one after the other instead (a Coalescer retries a failed batch item by item).
        raise ValueError("one run twice in a batch of intents")
    legs = [(number, wanted, o) for number, wanted in enumerate(runs, start=1) for o in wanted.plan.orders]
    found = await pool.fetch(
        ENSURE_INTENTS,
        [wanted.client_ids[o.leg] for _, wanted, o in legs],
        [o.leg for _, _, o in legs],
        [o.symbol for _, _, o in legs],
        [o.side for _, _, o in legs],
        [wanted.sending.get(o.leg, o.amount) for _, wanted, o in legs],
        [o.order_type for _, _, o in legs],
        [o.limit_price for _, _, o in legs],
        run_ids,
        [wanted.plan.portfolio_id for wanted in runs],
        [wanted.plan.user_id for wanted in runs],
        [wanted.plan.strategy.connection_id for wanted in runs],
        [o.leg in wanted.sending for _, wanted, o in legs],
        [number for number, _, _ in legs],
    )
    by_run: dict[str, dict[int, Intent]] = {run_id: {} for run_id in run_ids}
    for r in found:
        by_run[r["run_id"]][r["leg"]] = Intent(
            r["client_order_id"], r["leg"], r["state"], r["amount"], r["result"], r["fresh"], r["sent_ago"]
        )
    return [by_run[run_id] for run_id in run_ids]


# A leg already final (the reconciler, in another process, may have resolved it since it was
# read) is never marked, so it is never sent again.
MARK_SENDING = (
    "UPDATE order_intents SET state = 'sending', amount = $2, attempts = attempts + 1, updated_at = now(),"
    " sent_at = now() WHERE client_order_id = $1 AND state IN ('intent', 'sending')"
)


async def mark_sending(pool: asyncpg.Pool, client_order_id: str, amount: Decimal) -> bool:
    """Committed before the exchange is called: from now on the order may exist. False if the leg
    is no longer one that may be sent (it was resolved meanwhile): it must not be sent."""
    return bool(rows_affected(await pool.execute(MARK_SENDING, client_order_id, amount)))


MARK_SENDING_MANY = (
    "UPDATE order_intents i SET state = 'sending', amount = w.amount, attempts = i.attempts + 1,"
    " updated_at = now(), sent_at = now()"
    " FROM unnest($1::text[], $2::numeric[]) AS w(client_order_id, amount)"
    " WHERE i.client_order_id = w.client_order_id AND i.state IN ('intent', 'sending')"
)


async def mark_sending_many(pool: asyncpg.Pool, legs: list[tuple[str, Decimal]]) -> int:
    """``mark_sending`` for several legs (client order id, amount) in one statement; returns how
    many were marked."""
    return rows_affected(
        await pool.execute(
            MARK_SENDING_MANY,
            [client_order_id for client_order_id, _ in legs],
            [amount for _, amount in legs],
        )
    )


async def unmark_unsent(pool: asyncpg.Pool, client_order_ids: list[str]) -> None:
    """Legs marked 'sending' that the exchange was never asked for (a batch stopped before them),
    or that it refused for now before doing anything (a rate limit): back to 'intent', uncounted,
    so a retry sends them without looking them up first."""
    if client_order_ids:
        await pool.execute(
            "UPDATE order_intents SET state = 'intent', attempts = attempts - 1, updated_at = now()"
            " WHERE client_order_id = ANY($1::text[]) AND state = 'sending'",
            client_order_ids,
        )


def result_json(result: OrderResult) -> dict[str, Any]:
    return {
        "exchange_order_id": result.exchange_order_id,
        "status": result.status,
        "amount": str(result.amount),
        "filled": str(result.filled),
        "average_price": None if result.average_price is None else str(result.average_price),
        "cost": str(result.cost),
        "fee": str(result.fee),
        "fee_currency": result.fee_currency,
        "fee_known": result.fee_known,
    }


def result_from_json(client_order_id: str, symbol: str, side: str, data: dict[str, Any]) -> OrderResult:
    def dec(key: str) -> Decimal:
        return Decimal(str(data.get(key) or "0"))

    return OrderResult(
        client_order_id=client_order_id,
        exchange_order_id=data.get("exchange_order_id"),
        symbol=symbol,
        side="buy" if side == "buy" else "sell",
        status=data.get("status", "closed"),
        amount=dec("amount"),
        filled=dec("filled"),
        average_price=Decimal(data["average_price"]) if data.get("average_price") else None,
        cost=dec("cost"),
        fee=dec("fee"),
        fee_currency=data.get("fee_currency"),
        fee_known=bool(data.get("fee_known", True)),
    )


@dataclass(frozen=True)
class Outcome:
    """A leg's outcome, for ``record_outcomes``."""

    client_order_id: str
    state: str
    result: dict[str, Any] | None


RECORD_OUTCOMES = """
WITH outcomes AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[])
        AS o(client_order_id, state, exchange_order_id, result, event)
), updated AS (
    UPDATE order_intents i SET state = o.state, exchange_order_id = COALESCE(o.exchange_order_id, i.exchange_order_id),
        result = o.result::jsonb, updated_at = now()
    FROM outcomes o WHERE i.client_order_id = o.client_order_id
    RETURNING o.event
)
INSERT INTO outbox (producer, subject, message_id, payload)
SELECT 'executor', e.subject, e.message_id, e.payload
FROM unnest($6::text[], $7::text[], $8::bytea[]) WITH ORDINALITY AS e(subject, message_id, payload, event)
WHERE e.event IN (SELECT event FROM updated)
ORDER BY e.event
ON CONFLICT (message_id) DO NOTHING
"""


async def record_outcomes(
    pool: asyncpg.Pool, phases: Sequence[tuple[Sequence[Outcome], OutboxMessage]]
) -> list[None]:
    """Legs' outcomes, each phase's with the event that reports them, in one statement: atomically.
    A phase whose legs are not stored queues no event. Several runs' phases may go together."""
    rows = [(o, event) for event, (outcomes, _) in enumerate(phases, start=1) for o in outcomes]
    if rows:
        await pool.execute(
            RECORD_OUTCOMES,
            [o.client_order_id for o, _ in rows],
            [o.state for o, _ in rows],
            [(o.result or {}).get("exchange_order_id") for o, _ in rows],
            [None if o.result is None else json.dumps(o.result) for o, _ in rows],
            [event for _, event in rows],
            [m.subject for _, m in phases],
            [m.message_id for _, m in phases],
            [m.payload for _, m in phases],
        )
    return [None] * len(phases)


async def run_intents(pool: asyncpg.Pool, run_id: str) -> dict[int, Intent]:
    """A run's stored intents by leg, as they are now."""
    rows = await pool.fetch(
        "SELECT client_order_id, leg, state, amount, result FROM order_intents WHERE run_id = $1::uuid", run_id
    )
    return {r["leg"]: Intent(r["client_order_id"], r["leg"], r["state"], r["amount"], r["result"]) for r in rows}


# The longest a leg of unknown outcome waits between two look-ups (RECONCILE_MAX_WAIT_SECONDS).
MAX_LOOKUP_WAIT_SECONDS = 3600.0

# Each leg with its run's fields as the ledger recorded them (NULL while the ledger has not), for
# the report of the leg; the prices are the run's, to value a fill in another quote.
LEGS_WITH_RUNS = """
SELECT i.client_order_id, i.run_id::text, i.leg, i.state, i.connection_id::text, i.portfolio_id::text,
       i.user_id::text, i.symbol, i.side, i.amount, i.order_type,
       r.triggered_by, r.started_at, r.quote_currency, r.status AS run_status, s.prices
FROM order_intents i
LEFT JOIN rebalance_runs r ON r.id = i.run_id
LEFT JOIN portfolio_snapshots s ON s.run_id = i.run_id AND s.kind = 'before'
"""
# A leg is looked at again once it has waited $1 seconds, or an eighth of how long it had been
# unresolved when it was last looked at, if longer (at most $3 seconds): a leg the exchange never
# lists is looked up less and less often, not once a pass forever, each call taken from its
# account's rate limit.
STALE_UNRESOLVED = LEGS_WITH_RUNS + """
WHERE i.state IN ('sending', 'open') AND i.updated_at < now() - make_interval(secs => $1)
  AND i.updated_at < now() - LEAST(make_interval(secs => $3),
                                   (i.updated_at - COALESCE(i.sent_at, i.created_at)) / 8)
ORDER BY i.updated_at LIMIT $2
"""


async def stale_unresolved(
    pool: asyncpg.Pool, older_than_seconds: float, limit: int, *, max_wait_seconds: float = MAX_LOOKUP_WAIT_SECONDS
) -> list[asyncpg.Record]:
    """Intents whose outcome is unknown (the process died mid-call, or the run stopped before the
    exchange said how they ended), due a look and least recently looked at first: for the
    reconciler."""
    rows: list[asyncpg.Record] = await pool.fetch(STALE_UNRESOLVED, older_than_seconds, limit, max_wait_seconds)
    return rows


# The legs of unknown outcome among ``$1`` on the user's connection (for an AbandonOrders command).
OWNED_UNRESOLVED = LEGS_WITH_RUNS + """
WHERE i.client_order_id = ANY($1::text[]) AND i.connection_id = $2::uuid AND i.user_id = $3::uuid
  AND i.state IN ('sending', 'open')
ORDER BY i.created_at, i.client_order_id
"""


async def owned_unresolved(
    pool: asyncpg.Pool, client_order_ids: Sequence[str], connection_id: str, user_id: str
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        OWNED_UNRESOLVED, list(client_order_ids), connection_id, user_id
    )
    return rows


async def look_up_again_soon(pool: asyncpg.Pool, connection_id: str) -> int:
    """The connection's legs of unknown outcome are due a look at the reconciler's next pass, not
    after the long wait a leg unanswered for days has earned (STALE_UNRESOLVED): its key was just
    replaced, and the new one may find them. Returns how many."""
    return rows_affected(
        await pool.execute(
            "UPDATE order_intents SET updated_at = COALESCE(sent_at, created_at)"
            " WHERE connection_id = $1::uuid AND state IN ('sending', 'open')",
            connection_id,
        )
    )


# Read through order_intents_unresolved_idx (its predicate covers these states).
UNRESOLVED_SUMMARY = """
SELECT count(*) AS unresolved,
       COALESCE(EXTRACT(epoch FROM now() - min(COALESCE(sent_at, created_at))), 0)::float8 AS oldest_age
FROM order_intents WHERE state IN ('sending', 'open')
"""


async def unresolved_summary(pool: asyncpg.Pool) -> tuple[int, float]:
    """How many legs are of unknown outcome, and how long ago the oldest of them was sent."""
    row = await pool.fetchrow(UNRESOLVED_SUMMARY)
    assert row is not None
    return int(row["unresolved"]), float(row["oldest_age"])


async def looked_at(pool: asyncpg.Pool, client_order_ids: list[str]) -> None:
    """Unresolved intents the reconciler looked at without an answer go to the back of its queue,
    so that legs that never reached the exchange (looked up forever) never starve the others."""
    if client_order_ids:
        await pool.execute(
            "UPDATE order_intents SET updated_at = now()"
            " WHERE client_order_id = ANY($1::text[]) AND state IN ('sending', 'open')",
            client_order_ids,
        )


# The state the exchange reports for a leg that may exist; a leg already final is left as it is.
RESOLVE = """
UPDATE order_intents SET state = $2, result = $3::jsonb, exchange_order_id = COALESCE($4, exchange_order_id),
    updated_at = now()
WHERE client_order_id = $1 AND state IN ('sending', 'open')
"""
# The same, with the event that reports the leg, queued only if this statement resolved it (a leg
# already final was reported by whoever made it so).
RESOLVE_REPORTED = f"""
WITH resolved AS ({RESOLVE} RETURNING 1)
INSERT INTO outbox (producer, subject, message_id, payload)
SELECT 'executor', $5, $6, $7 FROM resolved
ON CONFLICT (message_id) DO NOTHING
"""


async def resolve(
    pool: asyncpg.Pool,
    client_order_id: str,
    state: str,
    result: dict[str, Any] | None,
    report: OutboxMessage | None = None,
) -> bool:
    """Set the state the exchange reports for a leg that may exist (a resting order, or one the
    reconciler found), and queue ``report``, the event that reports it, in the same statement.
    False if the leg was no longer unresolved (whoever resolved it reported it)."""
    resolved = (client_order_id, state, result, (result or {}).get("exchange_order_id"))
    if report is None:
        status = await pool.execute(RESOLVE, *resolved)
    else:
        status = await pool.execute(RESOLVE_REPORTED, *resolved, report.subject, report.message_id, report.payload)
    return bool(rows_affected(status))
