"""Seeding for the pipeline benchmark: a throwaway database, paper markets, and N users, paper
accounts, connections and portfolios written in bulk (COPY, executemany: 10,000 in seconds); and the
due events that start their runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from contracts.envelope import derived_id
from contracts.v1 import RebalanceDue, Strategy
from services.common import db
from services.common.exchanges.paper import seed_markets, synthetic_asset
from services.common.exchanges.paper_markets import SYNTHETIC_ASSET_COUNT
from services.common.migrate import apply_migrations

# Real USD markets (cash-like ones left out: they would be planned as near-cash).
REAL_ASSETS = ("BTC", "ETH", "SOL", "ADA", "DOT", "LINK", "AVAX", "XRP", "DOGE", "LTC", "BCH", "ATOM",
               "UNI", "XLM", "TRX", "NEAR", "AAVE", "MATIC", "ALGO", "FIL", "ETC")
QUOTE = "USD"
# Cash per asset: every buy stays well above the markets' 10 USD minimum cost.
CASH_PER_ASSET = Decimal(500)


def assets_for(count: int) -> list[str]:
    """``count`` assets with USD markets: real ones when they suffice, else synthetic ones."""
    if count <= len(REAL_ASSETS):
        return list(REAL_ASSETS[:count])
    if count > SYNTHETIC_ASSET_COUNT:
        raise ValueError(f"at most {SYNTHETIC_ASSET_COUNT} assets")
    return [synthetic_asset(i) for i in range(1, count + 1)]


def equal_weights(assets: list[str]) -> dict[str, Decimal]:
    """Percent weights summing to exactly 100 (the last asset takes the rounding)."""
    share = (Decimal(100) / len(assets)).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    weights = {a: share for a in assets}
    weights[assets[-1]] = Decimal(100) - share * (len(assets) - 1)
    return weights


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(admin_url: str, name: str) -> str:
    """Create and migrate a throwaway database; return its URL."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(admin_url, name)
    await apply_migrations(url)
    return url


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass(frozen=True)
class SeededPortfolio:
    strategy: Strategy
    account: str


async def seed_portfolios(pool: asyncpg.Pool, count: int, assets: list[str], *,
                          threshold: Decimal = Decimal(5)) -> list[SeededPortfolio]:
    """``count`` portfolios, each its own user and paper account holding only cash, so every
    run plans one buy per asset."""
    await seed_markets(pool)
    weights = equal_weights(assets)
    weights_json = {a: str(w) for a, w in weights.items()}
    cash = CASH_PER_ASSET * len(assets)
    users, connections, portfolios, balances = [], [], [], []
    seeded: list[SeededPortfolio] = []
    for index in range(count):
        user_id, connection_id, portfolio_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        account = f"bench-{index:06d}-{portfolio_id.hex[:6]}"
        name = f"Bench {index}"
        users.append((user_id, f"{account}@bench.invalid", "Bench"))
        connections.append((connection_id, user_id, "paper", "paper", account))
        portfolios.append((portfolio_id, user_id, connection_id, name, weights_json, False, threshold))
        balances.append((account, QUOTE, cash))
        seeded.append(SeededPortfolio(
            Strategy(portfolio_id=str(portfolio_id), user_id=str(user_id), name=name,
                     connection_id=str(connection_id), exchange_id="paper", target_weights=weights,
                     threshold=threshold, quote_currency=QUOTE),
            account,
        ))
    async with pool.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table("users", records=users, columns=["id", "email", "name"])
        await conn.copy_records_to_table(
            "exchange_connections", records=connections,
            columns=["id", "user_id", "exchange_id", "label", "paper_account"])
        # jsonb has no binary COPY encoder in asyncpg: executemany (~60k rows/s) instead.
        await conn.executemany(
            "INSERT INTO portfolios (id, user_id, connection_id, name, target_weights, rebalance_enabled,"
            " rebalance_threshold) VALUES ($1, $2, $3, $4, $5, $6, $7)", portfolios)
        # The pool sends numerics as text, which binary COPY cannot: one unnest insert instead.
        await conn.execute(
            "INSERT INTO paper_balances (account, asset, free)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[])",
            [b[0] for b in balances], [b[1] for b in balances], [b[2] for b in balances])
    return seeded


def due_event(portfolio: SeededPortfolio, due_at: datetime | None = None) -> RebalanceDue:
    """A manual due event, as the scheduler would emit it (the run id makes every id)."""
    run_id = str(uuid.uuid4())
    when = due_at or datetime.now(UTC)
    strategy = portfolio.strategy
    return RebalanceDue(
        message_id=derived_id(run_id, "due"),
        correlation_id=run_id,
        run_id=run_id,
        portfolio_id=strategy.portfolio_id,
        user_id=strategy.user_id,
        triggered_by="manual",
        started_at=when,
        strategy=strategy,
        due_at=when,
    )


def completion_id(run_id: str) -> str:
    """The completion event's id, whichever service (pricer or executor) emits it."""
    return derived_id(run_id, "completed")


# The benchmark's pool connects under this name, so that the measured window can wait for its
# connections to be gone (see bench/pg_window.py).
POOL_APPLICATION = "bench-pipeline"


def with_application_name(url: str, name: str) -> str:
    """The URL with ``application_name`` set (asyncpg passes unknown query keys as server settings)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | {"application_name": name}
    return urlunsplit(parts._replace(query=urlencode(query)))


async def open_pool(url: str) -> asyncpg.Pool:
    return await db.create_pool(with_application_name(url, POOL_APPLICATION), min_size=1, max_size=4)
