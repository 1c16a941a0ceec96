"""Runs that reach the same step together share its database round trip: the executor checks
their status and stores their intents with one statement each and writes their completions with
as few as they arrive in,
each run still completed exactly once, however often its plan is delivered."""

from __future__ import annotations

import asyncio
from typing import cast

import asyncpg
import pytest

from contracts.envelope import derived_id
from contracts.subjects import Subjects
from services.common.bus import Bus, OutboxRelay
from services.common.exchanges.accounts import ExchangeAccounts
from services.executor.engine import Executor
from services.planner.app import plan_for
from tests.component.samples import strategy, valued

pytestmark = pytest.mark.integration


async def test_runs_starting_together_share_their_round_trips_and_complete_once(
    db_pool: asyncpg.Pool, namespace: str
) -> None:
    relay = OutboxRelay(cast(Bus, None), db_pool, "executor")  # never flushed here: only woken
    executor = Executor(db_pool, ExchangeAccounts(db_pool), relay, Subjects(namespace))
    plans = [plan_for(valued(strategy(dry_run=True), {"USD": "10000"})) for _ in range(8)]
    assert all(p.decision == "rebalance" for p in plans)

    await asyncio.gather(*(executor.execute(plan) for plan in plans))
    await asyncio.gather(*(executor.execute(plan) for plan in plans))  # every plan delivered again

    assert executor._statuses.batches == 2  # one status read per wave of eight plans
    assert executor._intents.batches == 1  # the eight runs' intents in one statement; done plans store none
    stored = await db_pool.fetch(
        "SELECT run_id::text, count(*) AS legs FROM order_intents WHERE run_id = ANY($1::uuid[]) GROUP BY run_id",
        [p.run_id for p in plans],
    )
    assert {r["run_id"]: r["legs"] for r in stored} == {p.run_id: len(p.orders) for p in plans}
    assert executor._completions.batches <= 8
    completions = await db_pool.fetch(
        "SELECT message_id FROM outbox WHERE producer = 'executor' AND subject = $1 AND message_id = ANY($2::text[])",
        Subjects(namespace).rebalance_completed,
        [derived_id(p.run_id, "completed") for p in plans],
    )
    assert len(completions) == 8  # one per run
    claimed = await db_pool.fetchval(
        "SELECT count(*) FROM inbox WHERE consumer = 'executor.plans' AND message_id = ANY($1::text[])",
        [p.message_id for p in plans],
    )
    assert claimed == 8
