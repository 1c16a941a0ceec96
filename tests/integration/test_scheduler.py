"""The scheduler on real NATS JetStream and PostgreSQL, with an injected clock.

Fake times are in 2024, long before any real ``now()``: rows other tests create (due at their
real creation time) are never due at these times, so the shared session database is safe.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import asyncpg
import nats
import pytest
from nats.aio.msg import Msg

from contracts.envelope import derived_id
from contracts.v1.messages import RebalanceCompleted, RebalanceDue, RebalanceRequested
from services.common import db
from services.common.bus import Bus, Incoming, OutboxRelay, ensure_stream
from services.scheduler import check, handlers
from services.scheduler.clock import ManualClock
from services.scheduler.context import SchedulerContext
from services.scheduler.settings import SchedulerSettings

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 31, 0, 0, tzinfo=UTC)


def settings_for(nats_url: str, database_url: str, namespace: str, **kw) -> SchedulerSettings:
    return SchedulerSettings(
        nats_url=nats_url, database_url=database_url, bus_namespace=namespace,
        stream_name=namespace.upper(), ops_port=0, **kw,
    )


class Replica:
    """One scheduler replica: its own pool, broker connection and outbox relay."""

    def __init__(self, settings: SchedulerSettings, clock: ManualClock, name: str) -> None:
        self.settings, self.clock, self.name = settings, clock, name

    async def __aenter__(self) -> SchedulerContext:
        self.pool = await db.create_pool(self.settings.database_url, min_size=1, max_size=4)
        self.bus = Bus(self.settings, "scheduler")
        await self.bus.broker.connect()
        relay = OutboxRelay(self.bus, self.pool, "scheduler")
        return SchedulerContext(self.pool, relay, self.settings, self.clock, self.name)

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.broker.stop()
        await self.pool.close()


@pytest.fixture
async def stream(nats_url: str, database_url: str, namespace: str) -> AsyncIterator[SchedulerSettings]:
    settings = settings_for(nats_url, database_url, namespace, scheduler_claim_batch=4)
    await ensure_stream(settings)
    yield settings
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(settings.stream_name)
    finally:
        await nc.close()
    conn = await asyncpg.connect(database_url)
    try:  # nothing of this test may be left for another test's relay to publish
        await conn.execute("DELETE FROM outbox WHERE subject LIKE $1", f"{namespace}.%")
    finally:
        await conn.close()


@pytest.fixture
async def owner(db_pool: asyncpg.Pool) -> AsyncIterator[SimpleNamespace]:
    """A user with a paper connection; their portfolios and connections are deleted afterwards."""
    user_id = await db_pool.fetchval(
        "INSERT INTO users (email) VALUES ($1) RETURNING id", f"{uuid.uuid4().hex}@example.test"
    )
    connection_id = await db_pool.fetchval(
        "INSERT INTO exchange_connections (user_id, exchange_id) VALUES ($1, 'paper') RETURNING id", user_id
    )
    yield SimpleNamespace(user_id=user_id, connection_id=connection_id)
    await db_pool.execute("DELETE FROM portfolios WHERE user_id = $1", user_id)
    await db_pool.execute("DELETE FROM users WHERE id = $1", user_id)


async def add_portfolio(pool: asyncpg.Pool, owner: SimpleNamespace, *, interval: str = "daily",
                        cron: str | None = None, created: datetime = T0, enabled: bool = True,
                        name: str = "My Portfolio", dry_run: bool = False,
                        connection_id: uuid.UUID | None = None) -> str:
    """A portfolio on its own paper account (one live run per account at a time), or on
    ``connection_id``."""
    if connection_id is None:
        connection_id = await pool.fetchval(
            "INSERT INTO exchange_connections (user_id, exchange_id) VALUES ($1, 'paper') RETURNING id",
            owner.user_id,
        )
    pid = await pool.fetchval(
        "INSERT INTO portfolios (user_id, connection_id, name, target_weights, rebalance_enabled,"
        " rebalance_interval, cron, created_at, next_rebalance_at, dry_run)"
        " VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8, $8, $9) RETURNING id",
        owner.user_id, connection_id, name, json.dumps({"BTC": "60", "ETH": "30", "USDC": "10"}),
        enabled, interval, cron, created, dry_run,
    )
    return str(pid)


async def stream_messages(settings: SchedulerSettings, subject: str) -> list[Msg]:
    """Every message on ``subject`` in the test's stream, read with a plain nats-py consumer."""
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.stream_name)
        sub = await js.pull_subscribe(subject, stream=settings.stream_name)
        out: list[Msg] = []
        while len(out) < info.state.messages:
            try:
                fetched = await sub.fetch(500, timeout=1)
            except TimeoutError:  # nats-py raises its own subclass or asyncio's
                break
            for msg in fetched:
                await msg.ack()
            out.extend(fetched)
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def due_events(settings: SchedulerSettings) -> list[RebalanceDue]:
    return [RebalanceDue.model_validate_json(m.data)
            for m in await stream_messages(settings, settings.subjects.rebalance_due)]


def completion(run_id: str, portfolio_id: str, user_id: str, started: datetime, finished: datetime,
               status: str = "succeeded") -> RebalanceCompleted:
    return RebalanceCompleted(
        message_id=derived_id(run_id, "completed"), correlation_id=run_id, run_id=run_id,
        portfolio_id=portfolio_id, user_id=user_id, triggered_by="scheduler", started_at=started,
        status=status, dry_run=False, orders_executed=2, total_value_traded=Decimal("1500"),
        completed_at=finished,
    )


def incoming(message: Any) -> Incoming[Any]:
    return Incoming(message=message, raw=None)  # type: ignore[arg-type]


async def active_runs(pool: asyncpg.Pool, ids: list[str]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT id, user_id, active_run_id, active_run_started_at FROM portfolios"
        " WHERE id = ANY($1::uuid[]) AND active_run_id IS NOT NULL", ids,
    )
    return rows


async def test_three_replicas_over_a_month_emit_each_due_run_exactly_once(stream, owner, db_pool):
    clock = ManualClock(T0)
    expected: dict[str, int] = {}
    # 30 days of hourly checks from Jan 31 to Mar 1, 2024 (a leap February).
    for interval, cron, count, runs in [("hourly", None, 2, 720), ("daily", None, 3, 30),
                                        ("weekly", None, 3, 5), ("monthly", None, 3, 2),
                                        ("cron", "0 */6 * * *", 2, 120), ("threshold", None, 1, 720)]:
        for _ in range(count):
            expected[await add_portfolio(db_pool, owner, interval=interval, cron=cron)] = runs
    ids = list(expected)
    async with Replica(stream, clock, "r1") as a, Replica(stream, clock, "r2") as b, \
            Replica(stream, clock, "r3") as c:
        replicas = [a, b, c]
        for hour in range(720):
            now = T0 + timedelta(hours=hour)
            clock.set(now)
            reports = await asyncio.gather(*(check.check_once(r, now) for r in replicas))
            assert sum(rep.claimed for rep in reports) == len(await active_runs(db_pool, ids))
            # Each run completes a few minutes later; its completion is delivered twice, to
            # different replicas, concurrently.
            clock.set(now + timedelta(minutes=7))
            done = [incoming(completion(str(r["active_run_id"]), str(r["id"]), str(r["user_id"]),
                                        r["active_run_started_at"], clock.now()))
                    for r in await active_runs(db_pool, ids)]
            await asyncio.gather(handlers.handle_completions(replicas[hour % 3], done),
                                 handlers.handle_completions(replicas[(hour + 1) % 3], done))
            assert await active_runs(db_pool, ids) == []
    events = await due_events(stream)
    assert len({e.message_id for e in events}) == len(events)  # no duplicate on the stream
    per_slot = Counter((e.portfolio_id, e.due_at) for e in events)
    assert max(per_slot.values()) == 1
    assert Counter(e.portfolio_id for e in events) == expected
    assert all(e.message_id == e.run_id for e in events)
    monthly = sorted(e.due_at for e in events if expected[e.portfolio_id] == 2)
    assert {d.date().isoformat() for d in monthly} == {"2024-01-31", "2024-02-29"}


async def test_completion_delivered_twice_advances_next_once(stream, owner, db_pool):
    clock = ManualClock(T0 + timedelta(hours=10, minutes=5))
    pid = await add_portfolio(db_pool, owner, interval="daily", created=T0 + timedelta(hours=9))
    async with Replica(stream, clock, "r1") as ctx:
        report = await check.check_once(ctx)
        assert report.claimed == 1
        [run] = await active_runs(db_pool, [pid])
        clock.advance(timedelta(seconds=30))
        done = incoming(completion(str(run["active_run_id"]), pid, str(owner.user_id),
                                   run["active_run_started_at"], clock.now()))
        await handlers.handle_completions(ctx, [done])
        row = await db_pool.fetchrow("SELECT * FROM portfolios WHERE id = $1", pid)
        assert row["active_run_id"] is None
        assert row["next_rebalance_at"] == T0 + timedelta(days=1, hours=9)  # the daily grid
        assert row["last_rebalanced_at"] == clock.now()
        # Days later the same completion is redelivered: the inbox makes it a no-op.
        clock.advance(timedelta(days=3))
        await db_pool.execute("UPDATE portfolios SET last_rebalanced_at = NULL WHERE id = $1", pid)
        await handlers.handle_completions(ctx, [done, done])
        again = await db_pool.fetchrow("SELECT * FROM portfolios WHERE id = $1", pid)
        assert again["next_rebalance_at"] == row["next_rebalance_at"]
        assert again["last_rebalanced_at"] is None


async def test_skipped_run_keeps_last_rebalanced_and_failed_run_still_advances(stream, owner, db_pool):
    clock = ManualClock(T0)
    pid = await add_portfolio(db_pool, owner, interval="hourly")
    async with Replica(stream, clock, "r1") as ctx:
        for status in ("skipped", "failed"):
            await check.check_once(ctx)
            [run] = await active_runs(db_pool, [pid])
            await handlers.handle_completions(ctx, [incoming(completion(
                str(run["active_run_id"]), pid, str(owner.user_id), clock.now(), clock.now(), status))])
            row = await db_pool.fetchrow("SELECT * FROM portfolios WHERE id = $1", pid)
            assert row["last_rebalanced_at"] is None and row["active_run_id"] is None
            assert row["next_rebalance_at"] == clock.now() + timedelta(hours=1)
            clock.advance(timedelta(hours=1))


async def test_manual_trigger_during_an_active_run_is_refused(stream, owner, db_pool):
    clock = ManualClock(T0)
    pid = await add_portfolio(db_pool, owner, interval="weekly", enabled=False)
    async with Replica(stream, clock, "r1") as a, Replica(stream, clock, "r2") as b:
        run_id = str(uuid.uuid4())
        first = RebalanceRequested(correlation_id=run_id, portfolio_id=pid, requested_by=str(owner.user_id),
                                   dry_run=True)
        second = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=pid)
        # Two triggers race on two replicas: exactly one claims the portfolio.
        await asyncio.gather(handlers.handle_requests(a, [incoming(first)]),
                             handlers.handle_requests(b, [incoming(second)]))
        [active] = await active_runs(db_pool, [pid])
        winner = first if str(active["active_run_id"]) == run_id else second
        loser = second if winner is first else first
        refusal = await db_pool.fetchrow("SELECT * FROM activity_log WHERE message_id = $1", loser.message_id)
        assert refusal["event_type"] == "trigger_refused"
        assert "already has an active run" in refusal["description"]
        assert str(refusal["run_id"]) == str(active["active_run_id"])
        # A later trigger is refused too; a redelivered winner changes nothing.
        third = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=pid)
        await handlers.handle_requests(b, [incoming(third), incoming(winner)])
        assert await db_pool.fetchval("SELECT count(*) FROM activity_log WHERE message_id = $1",
                                      third.message_id) == 1
        # A request for an unknown portfolio is refused, not an error.
        ghost = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=str(uuid.uuid4()))
        await handlers.handle_requests(a, [incoming(ghost)])
        assert "not found" in await db_pool.fetchval(
            "SELECT description FROM activity_log WHERE message_id = $1", ghost.message_id)
    events = await due_events(stream)
    assert [e.run_id for e in events] == [str(active["active_run_id"])]
    assert events[0].triggered_by == "manual"
    if winner is first:  # the request's dry-run override is in the snapshot
        assert events[0].strategy.dry_run is True


async def test_expired_lease_fails_the_run_and_frees_the_portfolio(stream, owner, db_pool):
    clock = ManualClock(T0)
    pid = await add_portfolio(db_pool, owner, interval="daily")
    async with Replica(stream, clock, "r1") as ctx:
        await check.check_once(ctx)
        [old] = await active_runs(db_pool, [pid])
        clock.advance(timedelta(seconds=ctx.settings.scheduler_lease_seconds - 1))
        assert (await check.check_once(ctx)).expired == 0
        clock.advance(timedelta(seconds=2))
        report = await check.check_once(ctx)
        assert report.expired == 1 and report.claimed == 0
        row = await db_pool.fetchrow("SELECT * FROM portfolios WHERE id = $1", pid)
        assert row["active_run_id"] is None and row["next_rebalance_at"] == T0 + timedelta(days=1)
        # Recorded for the executor, which places none of the run's orders from now on.
        expired = await db_pool.fetch("SELECT run_id, portfolio_id FROM expired_runs WHERE portfolio_id = $1", pid)
        assert [(r["run_id"], str(r["portfolio_id"])) for r in expired] == [(old["active_run_id"], str(pid))]
        failed = [RebalanceCompleted.model_validate_json(m.data) for m in
                  await stream_messages(ctx.settings, ctx.settings.subjects.rebalance_completed)]
        assert [(f.run_id, f.status, f.errors[0].code) for f in failed] == [
            (str(old["active_run_id"]), "failed", "lease_expired")]
        assert "lease" in failed[0].reason
        # The next day a new run is claimed; the old run's late completion must not end it.
        clock.set(T0 + timedelta(days=1))
        await check.check_once(ctx)
        [new] = await active_runs(db_pool, [pid])
        assert new["active_run_id"] != old["active_run_id"]
        late = completion(str(old["active_run_id"]), pid, str(owner.user_id), T0, clock.now())
        await handlers.handle_completions(ctx, [incoming(late)])
        assert (await active_runs(db_pool, [pid]))[0]["active_run_id"] == new["active_run_id"]
    assert len(await due_events(stream)) == 2


async def test_schedule_edit_reschedules_and_unusable_rows_fail_cleanly(stream, owner, db_pool):
    clock = ManualClock(T0 + timedelta(hours=1))
    pid = await add_portfolio(db_pool, owner, interval="daily")
    await db_pool.execute("UPDATE portfolios SET next_rebalance_at = $2 WHERE id = $1", pid,
                          T0 + timedelta(days=1))
    await db_pool.execute("UPDATE portfolios SET rebalance_interval = 'hourly' WHERE id = $1", pid)
    assert await db_pool.fetchval("SELECT next_rebalance_at FROM portfolios WHERE id = $1", pid) is None
    broken = await add_portfolio(db_pool, owner, interval="daily", name="Broken")
    await db_pool.execute("UPDATE portfolios SET threshold_kind = 'sideways' WHERE id = $1", broken)
    async with Replica(stream, clock, "r1") as ctx:
        report = await check.check_once(ctx)
        assert report.rescheduled >= 1
        assert await db_pool.fetchval("SELECT next_rebalance_at FROM portfolios WHERE id = $1", pid) == \
            T0 + timedelta(hours=2)
        row = await db_pool.fetchrow("SELECT * FROM portfolios WHERE id = $1", broken)
        assert row["active_run_id"] is None and row["next_rebalance_at"] == T0 + timedelta(days=1)
    completed = [RebalanceCompleted.model_validate_json(m.data) for m in
                 await stream_messages(stream, stream.subjects.rebalance_completed)]
    assert [(c.portfolio_id, c.errors[0].code) for c in completed] == [(broken, "invalid_strategy")]
    assert await due_events(stream) == []
