"""Scheduler check cost vs table size: 10k, 100k and 1M portfolios with 1 % due.

    .venv/bin/python -m bench.bench_scheduler [--sizes 10000,100000,1000000]

Uses DATABASE_URL's server (default postgresql://postgres@127.0.0.1:5432/postgres) for a
throwaway database it creates and drops, and NATS_URL for a throwaway stream. Prints, per size,
the due query alone, the claim transactions (claim + outbox write), publishing with acks, and
due events per second. The point: cost follows the number due, not the table size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats

from services.common import db
from services.common.bus import Bus, OutboxRelay, ensure_stream
from services.common.migrate import apply_migrations
from services.scheduler.check import check_once
from services.scheduler.clock import ManualClock
from services.scheduler.context import SchedulerContext
from services.scheduler.settings import SchedulerSettings

NOW = datetime(2024, 6, 1, tzinfo=UTC)

# Each portfolio on its own paper account: an account has one live run at a time.
FILL_SQL = """
WITH accounts AS (
    INSERT INTO exchange_connections (user_id, exchange_id, paper_account)
    SELECT $1, 'paper', i::text FROM generate_series(1, $3) AS i
    RETURNING id, paper_account::int AS i
)
INSERT INTO portfolios (user_id, connection_id, name, target_weights, rebalance_enabled,
                        rebalance_interval, created_at, next_rebalance_at)
SELECT $1, id, 'bench ' || i, '{"BTC": "60", "ETH": "40"}'::jsonb, true, 'daily', $2::timestamptz,
       CASE WHEN i % 100 = 0 THEN $2::timestamptz - (i % 3600) * interval '1 second'
            ELSE $2::timestamptz + (1 + i % 86400) * interval '1 second' END
FROM accounts
"""

DUE_QUERY = (
    "SELECT id FROM portfolios WHERE rebalance_enabled AND active_run_id IS NULL"
    " AND next_rebalance_at <= $1 ORDER BY next_rebalance_at LIMIT $2"
)


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def bench_size(admin_dsn: str, nats_url: str, size: int, batch: int) -> None:
    name = f"rb_bench_{uuid.uuid4().hex[:8]}"
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(admin_dsn, name)
    settings = SchedulerSettings(nats_url=nats_url, database_url=dsn, bus_namespace=namespace,
                                 stream_name=namespace.upper(), ops_port=0, scheduler_claim_batch=batch)
    pool = None
    bus = Bus(settings, "scheduler")
    try:
        await apply_migrations(dsn)
        pool = await db.create_pool(dsn, min_size=1, max_size=4)
        user = await pool.fetchval("INSERT INTO users (email) VALUES ('bench@example.test') RETURNING id")
        t0 = time.perf_counter()
        await pool.execute(FILL_SQL, user, NOW, size, timeout=600)
        await pool.execute("ANALYZE portfolios")
        await pool.execute("ANALYZE exchange_connections")
        fill_s = time.perf_counter() - t0
        due = await pool.fetchval("SELECT count(*) FROM portfolios WHERE next_rebalance_at <= $1", NOW)

        query_ms = []
        for _ in range(5):
            q0 = time.perf_counter()
            await pool.fetch(DUE_QUERY, NOW, batch)
            query_ms.append((time.perf_counter() - q0) * 1000)
        plan = "\n".join(r[0] for r in await pool.fetch("EXPLAIN " + DUE_QUERY, NOW, batch))

        await ensure_stream(settings)
        await bus.broker.connect()
        ctx = SchedulerContext(pool, OutboxRelay(bus, pool, "scheduler"), settings,
                               ManualClock(NOW), "bench")
        report = await check_once(ctx, NOW)
        assert report.claimed == due, (report.claimed, due)
        print(f"{size:>9,} portfolios, {due:>6,} due | fill {fill_s:6.1f}s | due query (batch {batch})"
              f" median {sorted(query_ms)[2]:6.2f} ms | claim+outbox {report.claim_ms:8.1f} ms"
              f" ({report.claim_ms / max(due, 1) * 1000:6.1f} us/run) | publish {report.publish_ms:8.1f} ms"
              f" | check {report.total_ms:8.1f} ms | {due / (report.total_ms / 1000):8.0f} due events/s")
        print("    plan: " + " / ".join(line.strip() for line in plan.splitlines()[:3]))
    finally:
        await bus.broker.stop()
        if pool is not None:
            await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        nc = await nats.connect(nats_url)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(settings.stream_name)
        await nc.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    admin_dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    nats_url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    for size in (int(s) for s in args.sizes.split(",")):
        await bench_size(admin_dsn, nats_url, size, args.batch)


if __name__ == "__main__":
    asyncio.run(main())
