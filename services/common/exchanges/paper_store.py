"""The paper exchange's shared state in PostgreSQL: seeding, funding, prices, matching, inspection.

Every process reads and writes the same tables (migration 002), so what the executor trades is
what the pricer sees next, and the state survives restarts. Run one price walk per database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.common.exchanges.paper_markets import DEFAULT_MARKETS
from services.common.exchanges.paper_rules import (
    PaperMarket,
    RestingOrder,
    fill_resting,
    merge_balance_moves,
    walk_prices,
)
from services.common.exchanges.port import Market

log = logging.getLogger(__name__)

MARKET_COLUMNS = (
    "symbol, base, quote, price, min_amount, min_cost, amount_step, price_step, maker_fee, taker_fee, active"
)


def market_from_row(row: Mapping[str, Any]) -> PaperMarket:
    return PaperMarket(
        Market(
            symbol=row["symbol"], base=row["base"], quote=row["quote"],
            min_amount=row["min_amount"], min_cost=row["min_cost"],
            amount_step=row["amount_step"], price_step=row["price_step"],
            maker_fee=row["maker_fee"], taker_fee=row["taker_fee"], active=row["active"],
        ),
        row["price"],
    )


async def seed_markets(
    pool: asyncpg.Pool, markets: Iterable[PaperMarket] = DEFAULT_MARKETS, *, reset_prices: bool = False
) -> None:
    """Create or update markets. Idempotent; an existing market keeps its (walked) price unless
    ``reset_prices``, so re-seeding on restart does not undo the drift."""
    price_update = ", price = EXCLUDED.price" if reset_prices else ""
    rows = [
        (m.symbol, m.market.base, m.market.quote, m.price, m.market.min_amount, m.market.min_cost,
         m.market.amount_step, m.market.price_step, m.market.maker_fee, m.market.taker_fee,
         m.market.active)
        for m in markets
    ]
    await pool.executemany(
        f"""INSERT INTO paper_markets ({MARKET_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (symbol) DO UPDATE SET
                base = EXCLUDED.base, quote = EXCLUDED.quote, min_amount = EXCLUDED.min_amount,
                min_cost = EXCLUDED.min_cost, amount_step = EXCLUDED.amount_step,
                price_step = EXCLUDED.price_step, maker_fee = EXCLUDED.maker_fee,
                taker_fee = EXCLUDED.taker_fee, active = EXCLUDED.active,
                updated_at = now(){price_update}""",
        rows,
    )


async def fund_account(pool: asyncpg.Pool, account: str, balances: Mapping[str, Decimal]) -> None:
    """Set the free balance of each asset (funds locked by open orders are left as they are)."""
    for asset, amount in balances.items():
        if amount < 0:
            raise ValueError(f"a balance cannot be negative: {asset}={amount}")
    await pool.executemany(
        """INSERT INTO paper_balances (account, asset, free) VALUES ($1, $2, $3)
           ON CONFLICT (account, asset) DO UPDATE SET free = EXCLUDED.free, updated_at = now()""",
        [(account, asset, amount) for asset, amount in sorted(balances.items())],  # lock order
    )


async def set_price(pool: asyncpg.Pool, symbol: str, price: Decimal) -> None:
    """Move one market's price by hand (tests, demos) and fill the resting orders it crosses."""
    async with pool.acquire() as conn, conn.transaction():
        updated = await conn.execute(
            "UPDATE paper_markets SET price = $2, updated_at = now() WHERE symbol = $1", symbol, price
        )
        if updated == "UPDATE 0":
            raise KeyError(f"unknown paper market {symbol!r}")
        await _match_in_transaction(conn, [symbol])


async def match_open_orders(pool: asyncpg.Pool, symbols: Collection[str] | None = None) -> int:
    """Fill every open limit order the current price crosses; return how many filled."""
    async with pool.acquire() as conn, conn.transaction():
        return await _match_in_transaction(conn, symbols)


async def _match_in_transaction(conn: asyncpg.Connection, symbols: Collection[str] | None) -> int:
    rows = await conn.fetch(
        f"""SELECT o.id, o.account, o.side, o.amount, o.price AS limit_price, o.reserved_asset,
                   o.reserved, {", ".join("m." + c.strip() for c in MARKET_COLUMNS.split(","))}
            FROM paper_orders o JOIN paper_markets m ON m.symbol = o.symbol
            WHERE o.status = 'open' AND ($1::text[] IS NULL OR o.symbol = ANY($1::text[]))
              AND ((o.side = 'buy' AND m.price <= o.price) OR (o.side = 'sell' AND m.price >= o.price))
            ORDER BY o.id
            FOR UPDATE OF o SKIP LOCKED""",
        list(symbols) if symbols is not None else None,
    )
    if not rows:
        return 0
    fills = [
        fill_resting(
            RestingOrder(row["id"], row["account"], row["side"], row["amount"], row["limit_price"],
                         row["reserved_asset"], row["reserved"]),
            market_from_row(row).market,
        )
        for row in rows
    ]
    await conn.executemany(
        """UPDATE paper_orders SET status = 'closed', filled = amount, average_price = price,
               cost = $2, fee = $3, fee_currency = $4, reserved = 0, updated_at = now()
           WHERE id = $1""",
        [(f.order_id, f.cost, f.fee, f.fee_currency) for f in fills],
    )
    moves = merge_balance_moves([move for f in fills for move in f.balance_moves])
    await conn.executemany(
        """INSERT INTO paper_balances (account, asset, free, used)
           VALUES ($1, $2, GREATEST($3::numeric, 0), GREATEST($4::numeric, 0))
           ON CONFLICT (account, asset) DO UPDATE SET free = paper_balances.free + $3::numeric,
               used = paper_balances.used + $4::numeric, updated_at = now()""",
        moves,
    )
    return len(fills)


async def random_walk_step(
    pool: asyncpg.Pool,
    rng: random.Random,
    volatility: float = 0.002,
    *,
    symbols: Collection[str] | None = None,
) -> dict[str, Decimal]:
    """Move every active market's price (or only ``symbols``') one seeded step, then fill the
    resting orders the new prices cross. Same seed and steps over the same markets, same prices."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"""SELECT {MARKET_COLUMNS} FROM paper_markets
                WHERE active AND ($1::text[] IS NULL OR symbol = ANY($1::text[]))
                ORDER BY symbol FOR UPDATE""",
            list(symbols) if symbols is not None else None,
        )
        prices = walk_prices([market_from_row(r) for r in rows], rng, volatility)
        await conn.execute(
            """UPDATE paper_markets m SET price = v.price, updated_at = now()
               FROM unnest($1::text[], $2::numeric[]) AS v(symbol, price) WHERE m.symbol = v.symbol""",
            list(prices), list(prices.values()),
        )
        await _match_in_transaction(conn, list(prices))
    return prices


async def run_price_walk(
    pool: asyncpg.Pool,
    seed: int,
    interval_seconds: float,
    stop: asyncio.Event,
    *,
    volatility: float = 0.002,
    symbols: Collection[str] | None = None,
) -> int:
    """Step the walk every ``interval_seconds`` until ``stop`` is set; return the steps taken.

    A failed step (database restarting) is logged and skipped: the walk is a demo convenience and
    must not take its host process down.
    """
    rng = random.Random(seed)
    steps = 0
    while not stop.is_set():
        try:
            await random_walk_step(pool, rng, volatility, symbols=symbols)
            steps += 1
        except (asyncpg.PostgresError, OSError) as error:
            log.warning("paper price walk step failed: %s", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
    return steps


@dataclass(frozen=True)
class PaperOrder:
    id: int
    account: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    amount: Decimal
    price: Decimal | None
    status: str
    filled: Decimal
    average_price: Decimal | None
    cost: Decimal
    fee: Decimal
    fee_currency: str | None
    reserved_asset: str | None
    reserved: Decimal
    created_at: datetime
    updated_at: datetime


ORDER_COLUMNS = (
    "id, account, client_order_id, symbol, side, type, amount, price, status, filled, average_price,"
    " cost, fee, fee_currency, reserved_asset, reserved, created_at, updated_at"
)


def order_from_row(row: Mapping[str, Any]) -> PaperOrder:
    return PaperOrder(**{name.strip(): row[name.strip()] for name in ORDER_COLUMNS.split(",")})


async def account_orders(pool: asyncpg.Pool, account: str) -> list[PaperOrder]:
    """Every order of an account, oldest first."""
    rows = await pool.fetch(
        f"SELECT {ORDER_COLUMNS} FROM paper_orders WHERE account = $1 ORDER BY id", account
    )
    return [order_from_row(r) for r in rows]


async def count_orders(
    pool: asyncpg.Pool,
    account: str,
    *,
    client_order_id: str | None = None,
    symbol: str | None = None,
    status: str | None = None,
) -> int:
    """How many orders the exchange holds for an account (optionally one client id, symbol,
    status): tests assert exactly one order per leg with it."""
    count = await pool.fetchval(
        """SELECT count(*) FROM paper_orders WHERE account = $1
             AND ($2::text IS NULL OR client_order_id = $2)
             AND ($3::text IS NULL OR symbol = $3)
             AND ($4::text IS NULL OR status = $4)""",
        account, client_order_id, symbol, status,
    )
    return int(count)
