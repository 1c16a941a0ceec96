"""Several orders of one paper account in two statements.

``settle_in_order`` is the pure part: each order is judged and filled against the balances the
orders before it left, exactly as ``create_order`` called once per order would.
``read_accounts`` reads accounts' balances and open client ids (several accounts' at once);
``write_batch`` writes every balance move and order row in one statement that first checks the
markets are still the versions settled on. A batch costs two round trips however many orders it
holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from services.common.exchanges.paper_rules import (
    OrderPlan,
    PaperMarket,
    PaperOrderRejected,
    merge_balance_moves,
    plan_order,
    validate_order,
)
from services.common.exchanges.port import OrderRequest

ZERO = Decimal(0)


@dataclass(frozen=True)
class Placement:
    """An accepted order: what it does (the plan) at which market row."""

    request: OrderRequest
    plan: OrderPlan
    market: PaperMarket


Settled = Placement | PaperOrderRejected


def duplicate_client_id(request: OrderRequest) -> PaperOrderRejected:
    return PaperOrderRejected(
        "duplicate_client_order_id",
        f"an open order with client order id {request.client_order_id!r} already exists",
    )


def insufficient_funds(request: OrderRequest, plan: OrderPlan, free: Decimal) -> PaperOrderRejected:
    return PaperOrderRejected(
        "insufficient_funds",
        f"insufficient funds for {request.side} {request.amount:f} {request.symbol}: "
        f"needs {plan.debit:f} {plan.debit_asset}, free {free:f}",
    )


def settle_in_order(
    markets: Mapping[str, PaperMarket],
    free: Mapping[str, Decimal],
    open_client_ids: set[str],
    requests: Sequence[OrderRequest],
) -> list[Settled]:
    """Judge and fill ``requests`` one after another; a refused order changes nothing."""
    available = dict(free)
    open_ids = set(open_client_ids)
    settled: list[Settled] = []
    for request in requests:
        market = markets.get(request.symbol)
        try:
            validate_order(market, request)
            assert market is not None  # validate_order refuses an unknown symbol
            if request.client_order_id in open_ids:
                raise duplicate_client_id(request)
            plan = plan_order(market, request)
            have = available.get(plan.debit_asset, ZERO)
            if have < plan.debit:
                raise insufficient_funds(request, plan, have)
        except PaperOrderRejected as refused:
            settled.append(refused)
            continue
        available[plan.debit_asset] = have - plan.debit
        if plan.credit > 0:
            available[plan.credit_asset] = available.get(plan.credit_asset, ZERO) + plan.credit
        if plan.status == "open":
            open_ids.add(request.client_order_id)
        settled.append(Placement(request, plan, market))
    return settled


def balance_moves(account: str, placements: Sequence[Placement]) -> list[tuple[str, str, Decimal, Decimal]]:
    """(account, asset, free delta, used delta) per asset, summed, in lock order."""
    moves: list[tuple[str, str, Decimal, Decimal]] = []
    for placed in placements:
        plan = placed.plan
        moves.append((account, plan.debit_asset, -plan.debit, plan.lock))
        if plan.credit > 0:
            moves.append((account, plan.credit_asset, plan.credit, ZERO))
    return merge_balance_moves(moves)


class StaleMarkets(Exception):
    """A market row changed since it was read: nothing was written; read again and re-settle."""


@dataclass(frozen=True)
class AccountState:
    """What settling needs of one account, read without locks (the write re-checks)."""

    free: dict[str, Decimal]
    open_client_ids: set[str]


@dataclass(frozen=True)
class AccountQuery:
    """One account's balances of ``assets`` and which of ``client_ids`` are open orders there."""

    account: str
    assets: Sequence[str]
    client_ids: Sequence[str]


# Several accounts in one statement; each account's two arrays come from one scan, so they line
# up row for row. The asset and client id filters are the union of every query's: each caller
# keeps its own below.
READ_ACCOUNTS = """
SELECT b.assets, b.free, o.open_ids
FROM unnest($1::text[]) WITH ORDINALITY AS a(account, position)
CROSS JOIN LATERAL (SELECT array_agg(asset) AS assets, array_agg(free) AS free FROM paper_balances
                    WHERE account = a.account AND asset = ANY($2::text[])) AS b
CROSS JOIN LATERAL (SELECT array_agg(client_order_id) AS open_ids FROM paper_orders
                    WHERE account = a.account AND client_order_id = ANY($3::text[]) AND status = 'open') AS o
ORDER BY a.position
"""


async def read_accounts(pool: asyncpg.Pool, queries: Sequence[AccountQuery]) -> list[AccountState]:
    """Each account's balances and open client ids, in one round trip, a state per query, in order."""
    rows = await pool.fetch(
        READ_ACCOUNTS,
        [q.account for q in queries],
        list({asset for q in queries for asset in q.assets}),
        list({client_id for q in queries for client_id in q.client_ids}),
    )
    states = []
    for query, row in zip(queries, rows, strict=True):
        assets, client_ids = set(query.assets), set(query.client_ids)
        free = {a: f for a, f in zip(row["assets"] or (), row["free"] or (), strict=True) if a in assets}
        states.append(AccountState(free, {c for c in row["open_ids"] or () if c in client_ids}))
    return states


# One statement, so atomic without a transaction of round trips. It writes only if every market
# is still the version the orders were settled on (a resting order holds its market rows shared
# for the statement, so the next price move's matcher sees it); balances move by deltas, so a
# concurrent change to the account is never overwritten, and the CHECK (free >= 0) refuses the
# whole statement if the funds it was settled on are gone (the caller reads and settles again).
_WRITE_BATCH = """
WITH versions AS (
    SELECT * FROM unnest($16::text[], $17::text[]) AS v(symbol, version)
), locked AS (
    SELECT symbol, xmin::text AS version FROM paper_markets
    WHERE symbol = ANY($16::text[]) AND $18::boolean ORDER BY symbol FOR SHARE
), seen AS (
    SELECT symbol, xmin::text AS version FROM paper_markets WHERE symbol = ANY($16::text[]) AND NOT $18::boolean
), guard AS (
    SELECT 1 AS ok WHERE NOT EXISTS (
        SELECT 1 FROM versions v LEFT JOIN (SELECT * FROM locked UNION ALL SELECT * FROM seen) m USING (symbol)
        WHERE m.version IS DISTINCT FROM v.version)
), moves AS (
    SELECT * FROM unnest($19::text[], $20::numeric[], $21::numeric[]) AS m(asset, free, used)
    WHERE EXISTS (SELECT 1 FROM guard)
), updated AS (
    UPDATE paper_balances b SET free = b.free + moves.free, used = b.used + moves.used, updated_at = now()
    FROM moves WHERE b.account = $1 AND b.asset = moves.asset
    RETURNING b.asset
), credited AS (
    -- Only credits can meet a missing row (a debit needs funds, so a row).
    INSERT INTO paper_balances (account, asset, free, used)
    SELECT $1, asset, free, used FROM moves WHERE asset NOT IN (SELECT asset FROM updated)
    ON CONFLICT (account, asset) DO UPDATE SET free = paper_balances.free + EXCLUDED.free,
        used = paper_balances.used + EXCLUDED.used, updated_at = now()
), placed AS (
    -- Ids are drawn in batch order, so ascending ids map back to the orders.
    INSERT INTO paper_orders (account, client_order_id, symbol, side, type, amount, price, status, filled,
                              average_price, cost, fee, fee_currency, reserved_asset, reserved)
    SELECT $1, o.client_order_id, o.symbol, o.side, o.type, o.amount, o.price, o.status, o.filled,
           o.average_price, o.cost, o.fee, o.fee_currency, o.reserved_asset, o.reserved
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::numeric[], $8::text[],
                $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[], $13::text[], $14::text[],
                $15::numeric[])
         WITH ORDINALITY AS o(client_order_id, symbol, side, type, amount, price, status, filled, average_price,
                              cost, fee, fee_currency, reserved_asset, reserved, position)
    WHERE EXISTS (SELECT 1 FROM guard)
    ORDER BY o.position
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM guard) AS current, (SELECT array_agg(id ORDER BY id) FROM placed) AS ids
"""


async def write_batch(
    pool: asyncpg.Pool,
    account: str,
    placements: Sequence[Placement],
    versions: Mapping[str, str],
) -> list[str]:
    """Record accepted orders and their balance moves in one statement; their order ids, in
    order. Raises ``StaleMarkets`` (nothing written) when a market in ``versions`` changed."""
    moves = balance_moves(account, placements)
    row = await pool.fetchrow(
        _WRITE_BATCH,
        account,
        *_order_columns(placements),
        list(versions),
        list(versions.values()),
        any(p.plan.status == "open" for p in placements),
        [m[1] for m in moves],
        [m[2] for m in moves],
        [m[3] for m in moves],
    )
    assert row is not None
    if not row["current"]:
        raise StaleMarkets(f"a market of {', '.join(versions)} changed while the orders were settled")
    return [str(order_id) for order_id in row["ids"]]


def _order_columns(placements: Sequence[Placement]) -> list[list[object]]:
    columns: list[list[object]] = [[] for _ in range(14)]
    for placed in placements:
        request, plan = placed.request, placed.plan
        values = (
            request.client_order_id, request.symbol, request.side, request.order_type, request.amount,
            request.price if request.order_type == "limit" else None, plan.status, plan.filled,
            plan.average_price, plan.cost, plan.fee, plan.fee_currency,
            plan.debit_asset if plan.lock > 0 else None, plan.lock,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns
