"""kill -9 of a service at each step of a run: after the restart the run completes exactly once.

All five services run as separate processes on real NATS JetStream and PostgreSQL (one stack
for the module). Each test restarts its target with ``CRASH_AT=<point>``, makes a fresh
portfolio due so the scheduler claims it, waits for the target to die by SIGKILL, restarts it
without ``CRASH_AT`` and checks the counts: one order per leg on the exchange, one history run,
each trade and event once, the schedule advanced once.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.faults.helpers import (
    ACK_WAIT_SECONDS,
    LEGS,
    assert_rebalanced_once,
    fresh_database,
    make_due,
    pool_for,
    seed,
    wait_done,
)
from tests.infra import Infra
from tests.support.pipeline import delete_stream
from tests.support.processes import Stack, service_env, shorten_ack_waits

pytestmark = pytest.mark.faults

SERVICES = ("scheduler", "pricer", "planner", "executor", "ledger")

CRASH_POINTS = [
    # (crash point, the service that passes it, what has happened when it dies)
    ("scheduler.after_claim", "scheduler"),  # portfolio claimed, due event in the outbox only
    ("pricer.before_publish", "pricer"),  # due event received and valued, nothing published
    ("pricer.after_publish", "pricer"),  # valuation published, due event not acked
    ("planner.before_publish", "planner"),
    ("planner.after_publish", "planner"),
    ("executor.after_intents", "executor"),  # intents stored, nothing sent
    ("executor.after_intent", "executor"),  # leg marked sending, exchange not called
    ("executor.after_exchange", "executor"),  # exchange accepted, result not recorded
    ("executor.after_record", "executor"),  # leg recorded + event in the outbox, not relayed
    ("executor.before_complete", "executor"),  # all fills recorded, run not completed
    ("ledger.mid_write", "ledger"),  # inbox claimed, rows not written, inside the transaction
    ("ledger.after_commit", "ledger"),  # rows committed, batch not acked: redelivered, found in the inbox
    ("outbox.after_publish", "executor"),  # events published, outbox rows not marked: published again
]


@dataclass(frozen=True)
class CrashStack:
    stack: Stack
    pool: asyncpg.Pool
    nats_url: str
    stream: str


@pytest.fixture(scope="module")
async def crash_stack(infra: Infra) -> AsyncIterator[CrashStack]:
    namespace = f"f{uuid.uuid4().hex[:10]}"
    log_dir = Path(tempfile.mkdtemp(prefix="rebalancer-faults-"))
    async with fresh_database(infra.admin_dsn) as dsn, pool_for(dsn) as pool:
        env = service_env(nats_url=infra.nats_url, database_url=dsn, namespace=namespace)
        stack = Stack(env, log_dir)
        try:
            await stack.start(*SERVICES)
            await shorten_ack_waits(infra.nats_url, namespace.upper(), ACK_WAIT_SECONDS)
            yield CrashStack(stack, pool, infra.nats_url, namespace.upper())
        finally:
            await stack.stop_all()
            await delete_stream(infra.nats_url, namespace.upper())


@pytest.mark.parametrize(("point", "service"), CRASH_POINTS, ids=[p for p, _ in CRASH_POINTS])
async def test_a_kill_at_each_step_still_rebalances_exactly_once(
    crash_stack: CrashStack, point: str, service: str
) -> None:
    stack, pool = crash_stack.stack, crash_stack.pool
    target = stack[service]
    seeded = await seed(pool, name=f"crash at {point}")

    target.kill()  # idle (the bus settled after the last test): quicker than a graceful stop
    await make_due(pool, seeded)
    target.start({"CRASH_AT": point})
    code = await target.wait_exit(timeout=60)
    assert code == -9, f"{service} ended with {code}, not SIGKILL at {point}:\n{target.tail()}"
    assert f"CRASH_AT={point}" in target.output(current_start_only=True)

    target.start()
    await target.wait_ready()
    await wait_done(pool, crash_stack.nats_url, crash_stack.stream, [seeded], diagnostics=stack.logs)
    await assert_rebalanced_once(pool, seeded)


EXCHANGE_FAULTS = [
    # (PAPER_FAULTS, create_order calls beyond one per leg)
    ("drop_response=1|3", 0),  # the order executes, its answer is lost: looked up, never re-sent
    ("timeout=1|2", 2),  # nothing executes, the outcome is unknown: looked up, then sent again
    # The exchange refuses for now: nothing placed, so the call is not counted, and the run's retry
    # sends the leg again at once.
    ("unavailable=2", 0),
]


@pytest.mark.parametrize(("faults", "extra_calls"), EXCHANGE_FAULTS, ids=[f for f, _ in EXCHANGE_FAULTS])
async def test_exchange_faults_still_rebalance_exactly_once(
    crash_stack: CrashStack, faults: str, extra_calls: int
) -> None:
    stack, pool = crash_stack.stack, crash_stack.pool
    executor = stack["executor"]
    seeded = await seed(pool, name=f"exchange {faults}")
    # Left running with its faults afterwards: the next test restarts whatever it needs, and an
    # executor with faults must trade exactly once too.
    await executor.restart({"PAPER_FAULTS": faults})
    await make_due(pool, seeded)
    await wait_done(pool, crash_stack.nats_url, crash_stack.stream, [seeded], diagnostics=stack.logs)
    run = await assert_rebalanced_once(pool, seeded)
    # mark_sending counts every create_order call that may have reached the book: a lost answer
    # never caused a second one.
    calls = await pool.fetchval("SELECT sum(attempts) FROM order_intents WHERE run_id = $1", run["id"])
    assert calls == LEGS + extra_calls, f"{calls} create_order calls for {LEGS} legs with {faults}"
