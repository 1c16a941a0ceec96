"""Several orders of one paper account in one database transaction.

``settle_in_order`` is the pure part: each order is judged and filled against the balances the
orders before it left, exactly as ``create_order`` called once per order would. ``place_batch``
reads what it needs (markets, the account's balances locked, its open client ids), settles, and
writes every balance move and order row with one statement each: a batch costs a fixed handful
of round trips instead of one or two per order.
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
from services.common.exchanges.paper_store import MARKET_COLUMNS, market_from_row
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
                raise PaperOrderRejected(
                    "insufficient_funds",
                    f"insufficient funds for {request.side} {request.amount:f} {request.symbol}: "
                    f"needs {plan.debit:f} {plan.debit_asset}, free {have:f}",
                )
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
    """A market row changed between the read and the write: the batch is rolled back and re-run."""


_APPLY_MOVES = """
WITH moves AS (
    SELECT * FROM unnest($2::text[], $3::numeric[], $4::numeric[]) AS m(asset, free, used)
), updated AS (
    UPDATE paper_balances b SET free = b.free + moves.free, used = b.used + moves.used, updated_at = now()
    FROM moves WHERE b.account = $1 AND b.asset = moves.asset
    RETURNING b.asset
)
-- Only credits can meet a missing row (a debit needs funds, so a row): add them.
INSERT INTO paper_balances (account, asset, free, used)
SELECT $1, asset, free, used FROM moves WHERE asset NOT IN (SELECT asset FROM updated)
ON CONFLICT (account, asset) DO UPDATE SET free = paper_balances.free + EXCLUDED.free,
    used = paper_balances.used + EXCLUDED.used, updated_at = now()
"""

# The markets must still be the versions the orders were settled on; otherwise nothing is inserted
# and the caller rolls the batch back. Rows are numbered by their position in the batch, and ids
# are drawn in that order, so the returned ids map back to the orders.
_INSERT_ORDERS = """
INSERT INTO paper_orders (account, client_order_id, symbol, side, type, amount, price, status, filled,
                          average_price, cost, fee, fee_currency, reserved_asset, reserved)
SELECT $1, o.client_order_id, o.symbol, o.side, o.type, o.amount, o.price, o.status, o.filled,
       o.average_price, o.cost, o.fee, o.fee_currency, o.reserved_asset, o.reserved
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::numeric[], $8::text[],
            $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[], $13::text[], $14::text[],
            $15::numeric[])
     WITH ORDINALITY AS o(client_order_id, symbol, side, type, amount, price, status, filled, average_price,
                          cost, fee, fee_currency, reserved_asset, reserved, position)
WHERE NOT EXISTS (
    SELECT 1 FROM paper_markets m JOIN unnest($16::text[], $17::text[]) AS v(symbol, version)
        ON v.symbol = m.symbol
    WHERE m.xmin::text <> v.version)
ORDER BY o.position
RETURNING id
"""


async def place_batch(conn: asyncpg.Connection, account: str, requests: Sequence[OrderRequest]) -> list[
    tuple[Settled, str | None]
]:
    """Settle and record ``requests`` inside the caller's transaction on ``conn``.

    Returns each order's outcome with the exchange order id of an accepted one. Raises
    ``StaleMarkets`` when a market row changed meanwhile (the caller rolls back and retries).
    """
    symbols = sorted({r.symbol for r in requests})
    # A resting order must be seen by the matcher of any later price move: hold the market rows
    # (shared) like create_order does. Immediate fills only check the version at write time.
    lock = " FOR SHARE" if any(r.order_type == "limit" for r in requests) else ""
    rows = await conn.fetch(
        f"SELECT {MARKET_COLUMNS}, xmin::text AS version FROM paper_markets"
        f" WHERE symbol = ANY($1::text[]) ORDER BY symbol{lock}",
        symbols,
    )
    markets = {row["symbol"]: market_from_row(row) for row in rows}
    versions = {row["symbol"]: row["version"] for row in rows}
    assets = sorted({a for m in markets.values() for a in (m.market.base, m.market.quote)})
    balances = await conn.fetch(
        "SELECT asset, free, (SELECT array_agg(client_order_id) FROM paper_orders"
        "   WHERE account = $1 AND client_order_id = ANY($3::text[]) AND status = 'open') AS open_ids"
        " FROM paper_balances WHERE account = $1 AND asset = ANY($2::text[]) ORDER BY asset FOR UPDATE",
        account,
        assets,
        [r.client_order_id for r in requests],
    )
    free = {row["asset"]: row["free"] for row in balances}
    open_ids = set(balances[0]["open_ids"] or ()) if balances else set()
    if not balances:  # no funds at all; only the open-id check is left to read
        open_ids = {
            row["client_order_id"]
            for row in await conn.fetch(
                "SELECT client_order_id FROM paper_orders"
                " WHERE account = $1 AND client_order_id = ANY($2::text[]) AND status = 'open'",
                account,
                [r.client_order_id for r in requests],
            )
        }
    settled = settle_in_order(markets, free, open_ids, requests)
    placements = [s for s in settled if isinstance(s, Placement)]
    if not placements:
        return [(s, None) for s in settled]
    moves = balance_moves(account, placements)
    await conn.execute(
        _APPLY_MOVES, account, [m[1] for m in moves], [m[2] for m in moves], [m[3] for m in moves]
    )
    used = sorted({p.request.symbol for p in placements})
    ids = await conn.fetch(
        _INSERT_ORDERS,
        account,
        *_order_columns(placements),
        used,
        [versions[s] for s in used],
    )
    if len(ids) != len(placements):
        raise StaleMarkets(f"a market of {', '.join(used)} changed while the orders were settled")
    order_ids = iter(sorted(row["id"] for row in ids))
    return [(s, str(next(order_ids)) if isinstance(s, Placement) else None) for s in settled]


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
