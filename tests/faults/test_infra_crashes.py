"""The infrastructure dies in the middle of a burst of runs, then comes back.

- nats-server is killed with SIGKILL and restarted on the same store directory and port;
- PostgreSQL is stopped with ``pg_ctl stop -m immediate`` (a crash) and started again.

Both run on servers of their own (never the session's shared ones), with every service as a
separate process. After the restart every run completes exactly once.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Awaitable
from pathlib import Path

import asyncpg
import pytest

from services.common.migrate import apply_migrations
from tests.faults.helpers import (
    ACK_WAIT_SECONDS,
    assert_rebalanced_once,
    eventually,
    fresh_database,
    make_due,
    pool_for,
    seed,
    wait_done,
)
from tests.infra import Infra
from tests.support.pipeline import Seeded, delete_stream
from tests.support.processes import NatsServer, Stack, pg_cluster, service_env, shorten_ack_waits

pytestmark = pytest.mark.faults

SERVICES = ("scheduler", "pricer", "planner", "executor", "ledger")


async def orders_placed(pool: asyncpg.Pool, portfolios: list[Seeded]) -> int:
    count = await pool.fetchval(
        "SELECT count(*) FROM paper_orders WHERE account = ANY($1::text[])", [p.account for p in portfolios])
    return int(count)


async def test_nats_server_killed_mid_burst_loses_nothing_and_applies_nothing_twice(infra: Infra) -> None:
    runs = 20
    work = Path(tempfile.mkdtemp(prefix="rebalancer-natskill-"))
    server = NatsServer(work / "jetstream")
    namespace = f"n{uuid.uuid4().hex[:10]}"
    await server.start()
    try:
        async with fresh_database(infra.admin_dsn) as dsn, pool_for(dsn) as pool:
            # Two plans at a time and a slow exchange stretch the burst over seconds, so the kill
            # lands in it however fast this machine places orders.
            slow = {"EXECUTOR_CONCURRENCY": "2", "PAPER_LATENCY_MS": "50"}
            env = service_env(nats_url=server.url, database_url=dsn, namespace=namespace, extra=slow)
            stack = Stack(env, work / "logs")
            try:
                await stack.start(*SERVICES)
                await shorten_ack_waits(server.url, namespace.upper(), ACK_WAIT_SECONDS)
                portfolios = [await seed(pool, name=f"burst {i}") for i in range(runs)]
                await make_due(pool, *portfolios)

                # Mid-burst: some orders are on the exchange, most runs are still on their way.
                await eventually(lambda: _at_least(orders_placed(pool, portfolios), 8), "the burst to start",
                                 interval=0.05, diagnostics=stack.logs)
                server.kill()
                placed_at_kill = await orders_placed(pool, portfolios)
                await asyncio.sleep(1.0)
                await server.start()  # same port, same store directory

                await wait_done(pool, server.url, namespace.upper(), portfolios, timeout=120,
                                diagnostics=stack.logs)
                for seeded in portfolios:
                    await assert_rebalanced_once(pool, seeded)
                assert placed_at_kill < runs * 4, "the kill came after the burst: nothing was tested"
            finally:
                await stack.stop_all()
    finally:
        server.stop()
        shutil.rmtree(work / "jetstream", ignore_errors=True)  # the logs stay for a failure report


async def test_postgres_crash_mid_runs_is_waited_out_and_every_run_completes_once(infra: Infra) -> None:
    runs = 10
    work = Path(tempfile.mkdtemp(prefix="rebalancer-pgcrash-"))
    work.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data directory
    namespace = f"p{uuid.uuid4().hex[:10]}"
    with pg_cluster(work / "pg" / "data") as cluster:
        dsn = cluster.dsn_for("postgres")
        await apply_migrations(dsn)
        stack = Stack(service_env(nats_url=infra.nats_url, database_url=dsn, namespace=namespace), work / "logs")
        try:
            async with pool_for(dsn) as pool:
                portfolios = [await seed(pool, name=f"pg crash {i}") for i in range(runs)]
            await stack.start(*SERVICES)
            await shorten_ack_waits(infra.nats_url, namespace.upper(), ACK_WAIT_SECONDS)
            async with pool_for(dsn) as pool:
                await make_due(pool, *portfolios)
                await eventually(lambda: _at_least(orders_placed(pool, portfolios), 4), "the runs to start",
                                 interval=0.05, diagnostics=stack.logs)
            cluster.crash()
            await asyncio.sleep(3.0)  # every service now meets a dead database
            cluster.start()
            async with pool_for(dsn) as pool:
                await wait_done(pool, infra.nats_url, namespace.upper(), portfolios, timeout=120,
                                diagnostics=stack.logs)
                for seeded in portfolios:
                    await assert_rebalanced_once(pool, seeded)
            assert all(service.running for service in stack.services.values()), stack.logs()
        finally:
            await stack.stop_all()
            await delete_stream(infra.nats_url, namespace.upper())
    shutil.rmtree(work / "pg", ignore_errors=True)


async def _at_least(count: Awaitable[int], minimum: int) -> bool:
    return await count >= minimum
