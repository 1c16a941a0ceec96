"""Network faults between a service and NATS or PostgreSQL, through the TCP fault proxy.

The executor reaches NATS, and the ledger reaches PostgreSQL, only through a proxy; every
other service is connected directly. Each test makes a portfolio due, injects one fault while
the run crosses that link, lifts it, and checks the run completed exactly once.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.faults.helpers import (
    ACK_WAIT_SECONDS,
    assert_rebalanced_once,
    fresh_database,
    make_due,
    pool_for,
    runs_finished,
    seed,
    wait_done,
)
from tests.infra import Infra
from tests.support.faultproxy import FaultProxy, fault_proxy, proxied_url
from tests.support.pipeline import delete_stream
from tests.support.processes import Stack, service_env, shorten_ack_waits

pytestmark = pytest.mark.faults



@dataclass(frozen=True)
class ProxiedStack:
    stack: Stack
    pool: asyncpg.Pool
    nats_url: str
    stream: str
    executor_to_nats: FaultProxy
    ledger_to_postgres: FaultProxy


@pytest.fixture(scope="module")
async def proxied(infra: Infra) -> AsyncIterator[ProxiedStack]:
    namespace = f"x{uuid.uuid4().hex[:10]}"
    stream = namespace.upper()
    log_dir = Path(tempfile.mkdtemp(prefix="rebalancer-netfaults-"))
    async with fresh_database(infra.admin_dsn) as dsn, pool_for(dsn) as pool, \
            fault_proxy(infra.nats_url) as to_nats, fault_proxy(dsn) as to_pg:
        env = service_env(nats_url=infra.nats_url, database_url=dsn, namespace=namespace)
        stack = Stack(env, log_dir)
        try:
            await stack.start(
                "scheduler", "pricer", "planner", "executor", "ledger",
                env_for={
                    "executor": {"NATS_URL": proxied_url(infra.nats_url, to_nats.port)},
                    "ledger": {"DATABASE_URL": proxied_url(dsn, to_pg.port)},
                },
            )
            await shorten_ack_waits(infra.nats_url, stream, ACK_WAIT_SECONDS)
            yield ProxiedStack(stack, pool, infra.nats_url, stream, to_nats, to_pg)
        finally:
            await stack.stop_all()
            await delete_stream(infra.nats_url, stream)


Fault = Callable[[FaultProxy], None]
FAULTS: dict[str, tuple[Fault, float]] = {
    # name: (how to break the link, for how long)
    "latency": (lambda p: p.latency(300), 4.0),
    "reset": (lambda p: p.reset(), 2.0),
    "blackhole": (lambda p: p.blackhole(), 4.0),
    "drop_response": (lambda p: p.drop_responses(3), 4.0),
}


async def _run_through_fault(proxied: ProxiedStack, proxy: FaultProxy, fault: str) -> None:
    pool = proxied.pool
    seeded = await seed(pool, name=f"{fault} fault")
    inject, hold = FAULTS[fault]
    resets, dropped = proxy.stats.reset, proxy.stats.responses_dropped
    inject(proxy)
    await make_due(pool, seeded)
    await asyncio.sleep(hold)
    if fault == "blackhole":  # the fault really was in the run's way
        assert not await runs_finished(pool, [seeded]), "the run finished across a black hole"
    proxy.passthrough()
    if fault == "reset":
        assert proxy.stats.reset > resets
    if fault == "drop_response":
        assert proxy.stats.responses_dropped > dropped
    await wait_done(pool, proxied.nats_url, proxied.stream, [seeded], diagnostics=proxied.stack.logs)
    await assert_rebalanced_once(pool, seeded)
    assert proxied.stack["executor"].running and proxied.stack["ledger"].running, proxied.stack.logs()


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_executor_to_nats_fault(proxied: ProxiedStack, fault: str) -> None:
    before = proxied.executor_to_nats.stats.connections
    await _run_through_fault(proxied, proxied.executor_to_nats, fault)
    if fault in ("reset", "blackhole"):
        assert proxied.executor_to_nats.stats.connections > before, "the executor never reconnected"


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_ledger_to_postgres_fault(proxied: ProxiedStack, fault: str) -> None:
    await _run_through_fault(proxied, proxied.ledger_to_postgres, fault)
