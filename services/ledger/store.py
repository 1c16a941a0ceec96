"""Writing a batch of history rows: one statement per table, all in the caller's transaction.

Runs are upserted by run id from every stage (a stage may be replayed or, after a redelivery,
arrive late), so each stage sets only its own columns; snapshots, orders, trades and activity
are keyed so that a second write changes nothing (orders move forward to their latest state).
"""

from __future__ import annotations

import asyncpg

from contracts.v1.strategy import OUTCOME_ABANDONED, OUTCOME_FOUND_LATE, OUTCOME_UNKNOWN
from services.ledger.records import Rows, describe_run

_RUN_KEY_COLUMNS = "id, portfolio_id, user_id, triggered_by, started_at"
_RUN_KEY_VALUES = "$1::uuid, $2::uuid, $3::uuid, $4, $5"

INSERT_RUN_STARTED = f"""
INSERT INTO rebalance_runs ({_RUN_KEY_COLUMNS}, portfolio_name, dry_run, quote_currency, exchange_id, strategy,
                            executed_at)
VALUES ({_RUN_KEY_VALUES}, $6, $7, $8, $9, $10, $5)
ON CONFLICT (id) DO UPDATE SET portfolio_name = EXCLUDED.portfolio_name, strategy = EXCLUDED.strategy,
    quote_currency = EXCLUDED.quote_currency, exchange_id = EXCLUDED.exchange_id
"""

UPSERT_RUN_VALUED = f"""
INSERT INTO rebalance_runs ({_RUN_KEY_COLUMNS}, portfolio_value, executed_at)
VALUES ({_RUN_KEY_VALUES}, $6, $5)
ON CONFLICT (id) DO UPDATE SET portfolio_value = EXCLUDED.portfolio_value
"""

UPSERT_RUN_PLANNED = f"""
INSERT INTO rebalance_runs ({_RUN_KEY_COLUMNS}, decision, reason, drift, left_out, orders, orders_planned,
                            portfolio_value, executed_at)
VALUES ({_RUN_KEY_VALUES}, $6, $7, $8, $9, $10, $11, $12, $5)
ON CONFLICT (id) DO UPDATE SET decision = EXCLUDED.decision,
    reason = CASE WHEN rebalance_runs.status = 'running' THEN EXCLUDED.reason ELSE rebalance_runs.reason END,
    drift = EXCLUDED.drift, left_out = EXCLUDED.left_out, orders = EXCLUDED.orders,
    orders_planned = EXCLUDED.orders_planned, portfolio_value = EXCLUDED.portfolio_value
"""

UPSERT_RUN_COMPLETED = f"""
INSERT INTO rebalance_runs ({_RUN_KEY_COLUMNS}, status, success, dry_run, executed_at, duration_ms,
                            portfolio_value, value_after, orders_planned, orders_executed, orders_failed,
                            total_value_traded, fees, errors, reason)
VALUES ({_RUN_KEY_VALUES}, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, success = EXCLUDED.success,
    dry_run = EXCLUDED.dry_run, executed_at = EXCLUDED.executed_at, duration_ms = EXCLUDED.duration_ms,
    portfolio_value = CASE WHEN EXCLUDED.portfolio_value > 0 THEN EXCLUDED.portfolio_value
                           ELSE rebalance_runs.portfolio_value END,
    value_after = EXCLUDED.value_after, orders_planned = EXCLUDED.orders_planned,
    orders_executed = EXCLUDED.orders_executed, orders_failed = EXCLUDED.orders_failed,
    total_value_traded = EXCLUDED.total_value_traded, fees = EXCLUDED.fees, errors = EXCLUDED.errors,
    reason = EXCLUDED.reason
-- The scheduler's lease-expiry failure never overwrites an outcome the run itself reported.
WHERE rebalance_runs.status = 'running' OR NOT EXCLUDED.errors @> '[{{"code": "lease_expired"}}]'::jsonb
"""

INSERT_SNAPSHOT = """
INSERT INTO portfolio_snapshots (run_id, portfolio_id, user_id, kind, holdings, prices, total_value,
                                 quote_currency, taken_at)
VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6, $7, $8, $9)
ON CONFLICT (run_id, kind) DO NOTHING
"""

UPSERT_ORDER = """
INSERT INTO orders (client_order_id, run_id, portfolio_id, user_id, leg, exchange_id, symbol, side, order_type,
                    amount, status, filled, average_price, cost, fee, fee_currency, exchange_order_id, dry_run,
                    error, fee_known)
VALUES ($1, $2::uuid, $3::uuid, $4::uuid, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
ON CONFLICT (client_order_id) DO UPDATE SET status = EXCLUDED.status, filled = EXCLUDED.filled,
    average_price = EXCLUDED.average_price, cost = EXCLUDED.cost, fee = EXCLUDED.fee,
    fee_currency = EXCLUDED.fee_currency, exchange_order_id = EXCLUDED.exchange_order_id,
    error = EXCLUDED.error, amount = EXCLUDED.amount, fee_known = EXCLUDED.fee_known, updated_at = now()
WHERE orders.status = 'submitted' OR EXCLUDED.status <> 'submitted'
"""

INSERT_TRADE = """
INSERT INTO trades (client_order_id, run_id, portfolio_id, user_id, exchange_id, symbol, asset, quote, side,
                    quantity, price, value, fee, fee_currency, exchange_order_id, dry_run, executed_at, fee_known)
VALUES ($1, $2::uuid, $3::uuid, $4::uuid, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (client_order_id) DO NOTHING
"""

INSERT_ACTIVITY = """
INSERT INTO activity_log (message_id, user_id, portfolio_id, run_id, event_type, description, details, created_at)
VALUES ($1, $2::uuid, $3::uuid, $4::uuid, $5, $6, $7, $8)
ON CONFLICT (message_id) DO NOTHING
"""



# A completed run's legs that were of unknown outcome when it completed and have been reported
# since (by the executor's reconciler) join its figures: counted as executed or failed (a leg the
# paper exchange never took is found not placed), their value and fees (in the run's quote, at
# the run's prices) added, and their error says what they were found to be and when. A leg its
# owner abandoned counts as neither: its error says so. Keyed on the error itself, so a leg is
# added once whatever order the events come in.
SETTLE_UNKNOWN_LEGS = f"""
WITH found AS (
    SELECT r.id AS run_id, (e->>'leg')::int AS leg,
           o.status IN ('filled', 'partially_filled') AS executed,
           CASE WHEN o.error->>'code' = 'not_placed' THEN 'not placed' ELSE o.status END AS status,
           t.value, t.fee * COALESCE((s.prices->>t.fee_currency)::numeric, 0) AS fee
    FROM rebalance_runs r
    CROSS JOIN LATERAL jsonb_array_elements(r.errors) AS e
    JOIN orders o ON o.run_id = r.id AND o.leg = (e->>'leg')::int AND o.status <> 'submitted'
    LEFT JOIN trades t ON t.client_order_id = o.client_order_id
    LEFT JOIN portfolio_snapshots s ON s.run_id = r.id AND s.kind = 'before'
    WHERE r.id = ANY($1::uuid[]) AND r.status <> 'running' AND e->>'code' = '{OUTCOME_UNKNOWN}'
), runs AS (
    SELECT run_id, jsonb_object_agg(leg::text, status) AS legs,
           count(*) FILTER (WHERE executed) AS executed,
           count(*) FILTER (WHERE NOT executed AND status <> 'abandoned') AS failed,
           COALESCE(sum(value), 0) AS traded, COALESCE(sum(fee), 0) AS fees
    FROM found GROUP BY run_id
)
UPDATE rebalance_runs r SET
    orders_executed = r.orders_executed + f.executed,
    orders_failed = r.orders_failed + f.failed,
    total_value_traded = r.total_value_traded + f.traded,
    fees = r.fees + f.fees,
    errors = (
        SELECT jsonb_agg(CASE WHEN e->>'code' = '{OUTCOME_UNKNOWN}' AND f.legs ? (e->>'leg')
                              THEN e || CASE WHEN f.legs->>(e->>'leg') = 'abandoned'
                                  THEN jsonb_build_object(
                                      'code', '{OUTCOME_ABANDONED}',
                                      'message', (e->>'message')
                                                 || '; abandoned by its owner after the run completed,'
                                                 || ' its outcome never known')
                                  ELSE jsonb_build_object(
                                      'code', '{OUTCOME_FOUND_LATE}',
                                      'message', (e->>'message') || '; found ' || (f.legs->>(e->>'leg'))
                                                 || ' after the run completed') END
                              ELSE e END
                         ORDER BY n)
        FROM jsonb_array_elements(r.errors) WITH ORDINALITY AS x(e, n)
    )
FROM runs f
WHERE r.id = f.run_id
RETURNING r.id, r.status, r.dry_run, r.orders_executed, r.total_value_traded, r.quote_currency,
          COALESCE(r.duration_ms, 0) AS duration_ms, r.reason, r.errors
"""

# The completed run's activity line, rewritten with the figures the settled legs changed.
UPDATE_RUN_LINE = """
UPDATE activity_log SET description = $3, details = details || jsonb_build_object('errors', $4::jsonb)
WHERE run_id = $1 AND event_type = 'rebalance_' || $2
"""


def as_unnest(statement: str, types: tuple[str, ...]) -> str:
    """The same INSERT fed by one array per column: one execution for the whole batch instead of
    one per row (``executemany``), which costs PostgreSQL far less per row."""
    head, values_and_rest = statement.split("VALUES (", 1)
    values, rest = values_and_rest.split(")", 1)
    if values.count("$") != len(types):  # a column added to the statement needs its type here
        raise ValueError(f"{len(types)} column types for {values.count('$')} values in: {head.strip()[:60]}")
    arrays = ", ".join(f"${n}::{t}[]" for n, t in enumerate(types, start=1))
    return f"{head}SELECT * FROM unnest({arrays}){rest}"


_ORDER_TYPES = ("text", "uuid", "uuid", "uuid", "int4", "text", "text", "text", "text", "numeric", "text",
                "numeric", "numeric", "numeric", "numeric", "text", "text", "bool", "jsonb", "bool")
_TRADE_TYPES = ("text", "uuid", "uuid", "uuid", "text", "text", "text", "text", "text", "numeric", "numeric",
                "numeric", "numeric", "text", "text", "bool", "timestamptz", "bool")
_ACTIVITY_TYPES = ("text", "uuid", "uuid", "uuid", "text", "text", "jsonb", "timestamptz")
UPSERT_ORDERS_UNNEST = as_unnest(UPSERT_ORDER, _ORDER_TYPES)
INSERT_TRADES_UNNEST = as_unnest(INSERT_TRADE, _TRADE_TYPES)
INSERT_ACTIVITY_UNNEST = as_unnest(INSERT_ACTIVITY, _ACTIVITY_TYPES)


async def write_rows(conn: asyncpg.Connection, rows: Rows) -> None:
    """Flow order: a run's later stages update the row its earlier stages created."""
    for statement, batch, unnest in (
        (INSERT_RUN_STARTED, rows.runs_started, None),
        (UPSERT_RUN_VALUED, rows.runs_valued, None),
        (UPSERT_RUN_PLANNED, rows.runs_planned, None),
        (UPSERT_ORDER, rows.orders, UPSERT_ORDERS_UNNEST),
        (INSERT_TRADE, rows.trades, INSERT_TRADES_UNNEST),
        (UPSERT_RUN_COMPLETED, rows.runs_completed, None),
        (INSERT_SNAPSHOT, rows.snapshots, None),
        (INSERT_ACTIVITY, rows.activity, INSERT_ACTIVITY_UNNEST),
    ):
        if not batch:
            continue
        # One statement may not update a row twice (ON CONFLICT DO UPDATE): a batch holding two
        # states of one order is applied row by row, in order, as before.
        if unnest is not None and len(batch) > 1 and len({row[0] for row in batch}) == len(batch):
            await conn.execute(unnest, *(list(column) for column in zip(*batch, strict=True)))
        else:
            await conn.executemany(statement, batch)
    if rows.unknown_legs:  # rare: a run stopped with legs of unknown outcome
        settled = await conn.fetch(SETTLE_UNKNOWN_LEGS, rows.unknown_legs)
        await conn.executemany(UPDATE_RUN_LINE, [
            (
                run["id"],
                run["status"],
                describe_run(
                    run["status"], run["dry_run"], run["orders_executed"], run["total_value_traded"],
                    run["quote_currency"], run["duration_ms"], run["reason"],
                ),
                run["errors"],
            )
            for run in settled
        ])
