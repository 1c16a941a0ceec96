"""The scheduler as a running service (FastStream app in-process) driven over NATS only."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import nats
import pytest

from contracts.v1.messages import RebalanceCompleted, RebalanceDue, RebalanceRequested, SchedulerControl
from services.common.bus import Bus
from services.common.db import create_pool
from services.scheduler.app import build
from tests.integration.test_scheduler import add_portfolio, settings_for, stream_messages
from tests.integration.test_scheduler import owner as owner


# This test must see no other test's rows: its own database, and a pool on it.
@pytest.fixture
def database_url(own_database_url: str) -> str:
    return own_database_url


@pytest.fixture
async def db_pool(own_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(own_database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


pytestmark = pytest.mark.integration


async def wait_for(predicate, timeout: float = 20.0, step: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


async def test_service_claims_due_runs_and_obeys_commands(nats_url, database_url, namespace, db_pool, owner):
    # Real time here: a fresh portfolio is due at once (next_rebalance_at defaults to now()).
    now = datetime.now(UTC)
    pid = await add_portfolio(db_pool, owner, interval="daily", created=now)
    await db_pool.execute("UPDATE portfolios SET next_rebalance_at = now() - interval '1 minute'"
                          " WHERE id = $1", pid)
    settings = settings_for(nats_url, database_url, namespace, scheduler_check_interval="1",
                            scheduler_poll_seconds=0.2)
    await db_pool.execute("DELETE FROM scheduler_state")
    app, service = build(settings)
    task = asyncio.create_task(app.run())
    client = Bus(settings, "test-client")
    try:
        await wait_for(lambda: db_pool.fetchval(
            "SELECT active_run_id FROM portfolios WHERE id = $1", pid))
        run_id = str(await db_pool.fetchval("SELECT active_run_id FROM portfolios WHERE id = $1", pid))
        state = await db_pool.fetchrow("SELECT * FROM scheduler_state")
        assert state["is_running"] and state["check_interval"] == "1"
        assert await db_pool.fetchval("SELECT count(*) FROM scheduler_replicas") >= 1
        await client.broker.connect()

        # A manual trigger while the run is active: refused, recorded, not queued.
        refused = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=pid)
        await client.publish_event(settings.subjects.rebalance_request, refused)
        await wait_for(lambda: db_pool.fetchval(
            "SELECT description FROM activity_log WHERE message_id = $1", refused.message_id))

        # Completion over the bus, twice: the claim ends, next moves to tomorrow's slot once.
        due = [RebalanceDue.model_validate_json(m.data)
               for m in await stream_messages(settings, settings.subjects.rebalance_due)]
        assert [d.run_id for d in due] == [run_id]
        done = RebalanceCompleted(
            **due[0].caused(), run_id=run_id, portfolio_id=pid, user_id=str(owner.user_id),
            triggered_by="scheduler", started_at=due[0].started_at, status="succeeded", dry_run=False,
            orders_executed=4, total_value_traded=Decimal("9000"), completed_at=datetime.now(UTC),
        )
        await client.publish_event(settings.subjects.rebalance_completed, done)
        await wait_for(lambda: db_pool.fetchval(
            "SELECT last_rebalanced_at IS NOT NULL FROM portfolios WHERE id = $1", pid))
        row = await db_pool.fetchrow("SELECT * FROM portfolios WHERE id = $1", pid)
        assert row["active_run_id"] is None and row["next_rebalance_at"] > now

        # Stop over NATS: a due portfolio is no longer claimed; a manual trigger still works.
        await client.publish_event(settings.subjects.scheduler_control,
                                   SchedulerControl(correlation_id="ops", action="stop"))
        await wait_for(lambda: db_pool.fetchval("SELECT NOT is_running FROM scheduler_state"))
        await asyncio.sleep(0.5)
        await db_pool.execute("UPDATE portfolios SET next_rebalance_at = now() WHERE id = $1", pid)
        await asyncio.sleep(1.5)
        assert await db_pool.fetchval("SELECT active_run_id FROM portfolios WHERE id = $1", pid) is None
        manual_run = str(uuid.uuid4())
        await client.publish_event(settings.subjects.rebalance_request, RebalanceRequested(
            correlation_id=manual_run, portfolio_id=pid, dry_run=True))
        await wait_for(lambda: db_pool.fetchval(
            "SELECT active_run_id::text = $2 FROM portfolios WHERE id = $1", pid, manual_run))

        # update-config at run time reaches the shared state.
        await client.publish_event(settings.subjects.scheduler_control, SchedulerControl(
            correlation_id="ops", action="update-config", check_interval="*/5 * * * *", dry_run_mode=True))
        await wait_for(lambda: db_pool.fetchval(
            "SELECT check_interval = '*/5 * * * *' AND dry_run_mode FROM scheduler_state"))
        await wait_for(lambda: _true(service.ctx.dry_run_mode))  # this replica follows it
    finally:
        app.exit()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        await client.broker.stop()
        await db_pool.execute("DELETE FROM scheduler_state")
        await db_pool.execute("DELETE FROM outbox WHERE subject LIKE $1", f"{namespace}.%")
        nc = await nats.connect(nats_url)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(settings.stream_name)
        await nc.close()


async def _true(value: bool) -> bool:
    return value
