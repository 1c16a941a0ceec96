"""One live run per exchange account at a time, on real PostgreSQL and NATS JetStream.

A portfolio values and rebalances its whole account, so a live run valued while another live run
trades the same account would plan against half-traded balances and trade part of the same drift
again. Accounts can hold several portfolios: dry runs, and live ones made before the API refused a
second. The clock is injected; times are in 2024, as in ``test_scheduler``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import asyncpg
import pytest

from contracts.v1.messages import RebalanceCompleted, RebalanceRequested
from services.scheduler import check, handlers
from services.scheduler import repository as repo
from services.scheduler.app import warn_of_shared_accounts
from services.scheduler.clock import ManualClock
from services.scheduler.runs import SECOND_LIVE_PORTFOLIO
from tests.integration.test_scheduler import (  # noqa: F401
    T0,
    Replica,
    active_runs,
    add_portfolio,
    completion,
    due_events,
    incoming,
    owner,
    stream,
    stream_messages,
)

pytestmark = pytest.mark.integration


async def new_account(pool: asyncpg.Pool, owner) -> uuid.UUID:  # noqa: F811
    account: uuid.UUID = await pool.fetchval(
        "INSERT INTO exchange_connections (user_id, exchange_id) VALUES ($1, 'paper') RETURNING id", owner.user_id
    )
    return account


async def refusal(pool: asyncpg.Pool, request: RebalanceRequested) -> asyncpg.Record:
    row: asyncpg.Record = await pool.fetchrow(
        "SELECT run_id, description FROM activity_log WHERE message_id = $1 AND event_type = 'trigger_refused'",
        request.message_id,
    )
    assert row is not None, f"request {request.message_id} was not refused"
    return row


async def wait_for_a_lock_wait(pool: asyncpg.Pool) -> None:
    """Until some statement waits on a row or transaction lock (the claim on the unique index)."""
    for _ in range(200):
        if await pool.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no statement waited on the uncommitted claim")


async def test_an_account_has_one_live_run_at_a_time(stream, owner, db_pool):  # noqa: F811
    shared = await new_account(db_pool, owner)
    at = T0 - timedelta(minutes=10)
    first = await add_portfolio(db_pool, owner, name="First", connection_id=shared, created=at)
    second = await add_portfolio(db_pool, owner, name="Second", connection_id=shared,
                                 created=at + timedelta(minutes=1))
    simulated = await add_portfolio(db_pool, owner, name="Simulated", connection_id=shared, dry_run=True,
                                    created=at - timedelta(minutes=1))
    by_hand = await add_portfolio(db_pool, owner, name="By hand", connection_id=shared, dry_run=True,
                                  enabled=False)
    # Five more on their own accounts: with batches of 4, the first batch holds both live rows of
    # the shared account, so the check must go on after a batch that claimed fewer than it locked.
    alone = [await add_portfolio(db_pool, owner, name=f"Alone {i}") for i in range(5)]
    clock = ManualClock(T0)
    async with Replica(stream, clock, "r1") as ctx:
        report = await check.check_once(ctx)
        assert (report.found, report.claimed, report.waiting) == (8, 7, 1)
        active = {str(r["id"]): r for r in await active_runs(db_pool, [first, second, simulated, *alone])}
        assert set(active) == {first, simulated, *alone}  # the dry run shares the account
        held = await db_pool.fetchrow("SELECT next_rebalance_at FROM portfolios WHERE id = $1", second)
        assert held["next_rebalance_at"] == at + timedelta(minutes=1)  # still due, not skipped

        # Checks while the first runs leave the second due; a live trigger of it is refused, and a
        # dry-run portfolio triggered live as well. The same portfolio triggered as a dry run runs.
        assert ((again := await check.check_once(ctx)).claimed, again.waiting) == (0, 1)
        live_second = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=second)
        live_by_hand = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=by_hand, dry_run=False)
        dry_by_hand = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=by_hand)
        await handlers.handle_requests(ctx, [incoming(live_second), incoming(live_by_hand)])
        for request, name in ((live_second, "Second"), (live_by_hand, "By hand")):
            refused = await refusal(db_pool, request)
            assert str(refused["run_id"]) == str(active[first]["active_run_id"])
            assert f"portfolio {name}'s exchange account is being rebalanced live for portfolio First" in (
                refused["description"])
        assert await active_runs(db_pool, [second, by_hand]) == []
        await handlers.handle_requests(ctx, [incoming(dry_by_hand)])
        [dry] = await active_runs(db_pool, [by_hand])
        assert str(dry["active_run_id"]) == dry_by_hand.correlation_id

        # Once the first completes, the next check claims the second, made after it: its live run
        # fails at once, since the account is the first's, and it is due again on its schedule. A
        # dry-run portfolio triggered live fails the same way; triggered as a dry run, the second runs.
        clock.advance(timedelta(minutes=3))
        run = active[first]
        await handlers.handle_completions(ctx, [incoming(completion(
            str(run["active_run_id"]), first, str(owner.user_id), run["active_run_started_at"], clock.now()))])
        assert ((last := await check.check_once(ctx)).claimed, last.waiting) == (1, 0)
        assert await active_runs(db_pool, [second]) == []
        assert await db_pool.fetchval("SELECT next_rebalance_at FROM portfolios WHERE id = $1", second) == (
            ctx.next_due_after(await db_pool.fetchrow("SELECT * FROM portfolios WHERE id = $1", second), clock.now()))
        spare = await add_portfolio(db_pool, owner, name="Spare", connection_id=shared, dry_run=True, enabled=False)
        live_spare = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=spare, dry_run=False)
        dry_second = RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=second, dry_run=True)
        await handlers.handle_requests(ctx, [incoming(live_spare), incoming(dry_second)])
        assert [str(r["id"]) for r in await active_runs(db_pool, [second, spare])] == [second]
    events = {e.run_id: e for e in await due_events(stream)}
    assert sorted(e.portfolio_id for e in events.values()) == sorted(
        [first, simulated, *alone, by_hand, second])
    assert events[dry_by_hand.correlation_id].strategy.dry_run is True
    assert events[dry_second.correlation_id].strategy.dry_run is True
    failed = [RebalanceCompleted.model_validate_json(m.data) for m in
              await stream_messages(stream, stream.subjects.rebalance_completed)]
    assert [(f.portfolio_id, f.status, f.dry_run, f.errors[0].code) for f in failed] == [
        (second, "failed", False, SECOND_LIVE_PORTFOLIO), (spare, "failed", False, SECOND_LIVE_PORTFOLIO)]
    assert f"portfolio 'First' ({first}) was made first" in failed[0].reason
    assert f"this dry-run portfolio's exchange account trades live for portfolio 'First' ({first})" in (
        failed[1].reason)
    assert failed[1].run_id == live_spare.correlation_id and failed[1].triggered_by == "manual"


async def test_the_portfolio_keeping_the_account_is_claimed_before_one_due_earlier_that_it_refuses(
    stream, owner, db_pool  # noqa: F811
):
    """Of two live portfolios on one account, the younger due first: the check claims the older,
    which keeps the account, and the younger waits. Claimed first, the younger would fail at once
    and put the older's run off to the next check (an hour, by default)."""
    shared = await new_account(db_pool, owner)
    older = await add_portfolio(db_pool, owner, name="Older", connection_id=shared, created=T0 - timedelta(minutes=5))
    younger = await add_portfolio(db_pool, owner, name="Younger", connection_id=shared,
                                  created=T0 - timedelta(minutes=1))
    await db_pool.execute("UPDATE portfolios SET next_rebalance_at = $2 WHERE id = $1", uuid.UUID(younger),
                          T0 - timedelta(minutes=10))
    clock = ManualClock(T0)
    async with Replica(stream, clock, "r1") as ctx:
        report = await check.check_once(ctx)
        assert (report.claimed, report.waiting) == (1, 1)
        [run] = await active_runs(db_pool, [older, younger])
        assert str(run["id"]) == older
        assert await stream_messages(stream, stream.subjects.rebalance_completed) == []
        # Once the older's run completes, the younger is claimed, and its run fails at once.
        clock.advance(timedelta(minutes=1))
        await handlers.handle_completions(ctx, [incoming(completion(
            str(run["active_run_id"]), older, str(owner.user_id), run["active_run_started_at"], clock.now()))])
        assert (await check.check_once(ctx)).claimed == 1
        assert await active_runs(db_pool, [older, younger]) == []
    [failed] = [RebalanceCompleted.model_validate_json(m.data) for m in
                await stream_messages(stream, stream.subjects.rebalance_completed)]
    assert (failed.portfolio_id, failed.errors[0].code) == (younger, SECOND_LIVE_PORTFOLIO)
    assert [e.portfolio_id for e in await due_events(stream)] == [older]


@pytest.mark.parametrize("path", ["scheduled", "manual"])
async def test_a_claim_racing_another_replicas_live_claim_on_the_account_does_not_start_a_second(
    stream, owner, db_pool, database_url, path  # noqa: F811
):
    """Replica B locks the second portfolio while replica A's claim of the first (same account) is
    not committed yet, so B's check cannot see it: migration 010's unique index makes B wait, then
    refuses B's claim; B claims again, without the busy account, and its other claims stand."""
    shared = await new_account(db_pool, owner)
    enabled = path == "scheduled"
    first = await add_portfolio(db_pool, owner, name="First", connection_id=shared, enabled=False)
    second = await add_portfolio(db_pool, owner, name="Second", connection_id=shared, enabled=enabled)
    other = await add_portfolio(db_pool, owner, name="Other", enabled=enabled)
    clock = ManualClock(T0)
    a = await asyncpg.connect(database_url)
    try:
        async with Replica(stream, clock, "r2") as b:
            tx = a.transaction()
            await tx.start()
            claimed_first = await repo.claim_one(a, first, T0, b.lease, "manual", None, False)
            assert claimed_first is not None
            requests = [RebalanceRequested(correlation_id=str(uuid.uuid4()), portfolio_id=p) for p in (second, other)]
            racing = asyncio.create_task(
                check.claim_due_batch(b, T0) if enabled
                else handlers.handle_requests(b, [incoming(r) for r in requests])
            )
            await wait_for_a_lock_wait(db_pool)
            assert not racing.done()
            await tx.commit()
            result = await asyncio.wait_for(racing, 30)
            if enabled:
                assert result == (1, 1)  # the retry locked and claimed the other only
                await b.flush_outbox()
            else:
                refused = await refusal(db_pool, requests[0])
                assert str(refused["run_id"]) == str(claimed_first["active_run_id"])
                assert "being rebalanced live for portfolio First" in refused["description"]
    finally:
        await a.close()
    active = {str(r["id"]): r["active_run_id"] for r in await active_runs(db_pool, [first, second, other])}
    assert set(active) == {first, other}
    assert active[first] == claimed_first["active_run_id"]
    assert [e.portfolio_id for e in await due_events(stream)] == [other]


async def test_startup_names_accounts_with_several_live_portfolios(stream, owner, db_pool, caplog):  # noqa: F811
    shared, mixed = await new_account(db_pool, owner), await new_account(db_pool, owner)
    one = await add_portfolio(db_pool, owner, name="One", connection_id=shared)
    two = await add_portfolio(db_pool, owner, name="Two", connection_id=shared, created=T0 + timedelta(minutes=1))
    await add_portfolio(db_pool, owner, name="Live", connection_id=mixed)
    await add_portfolio(db_pool, owner, name="Simulated", connection_id=mixed, dry_run=True)
    async with Replica(stream, ManualClock(T0), "r1") as ctx:
        with caplog.at_level(logging.WARNING, logger="services.scheduler"):
            await warn_of_shared_accounts(ctx)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    [line] = [w for w in warnings if str(shared) in w]
    assert "has 2 live portfolios" in line and "dry run" in line
    assert f"One ({one}) was made first and keeps trading; the live runs of Two ({two}) fail with" in line
    assert not [w for w in warnings if str(mixed) in w]


async def test_three_replicas_claim_live_portfolios_of_a_few_accounts_once_each(stream, owner, db_pool):  # noqa: F811
    """30 live portfolios on 5 accounts (made before the API kept an account to one), all due,
    checked by three replicas at once round after round, each round's runs completing before the
    next. The replicas' claims race on the accounts every round, yet no account ever has two live
    runs, and every portfolio is claimed exactly once: the oldest of each account runs, and the
    others' live runs fail at once, since the account is the oldest's."""
    accounts = [await new_account(db_pool, owner) for _ in range(5)]
    ids = [
        await add_portfolio(db_pool, owner, name=f"P{i}", connection_id=accounts[i % 5],
                            created=T0 - timedelta(seconds=i))
        for i in range(30)
    ]
    oldest = ids[25:]  # one per account
    clock = ManualClock(T0)
    async with Replica(stream, clock, "r1") as a, Replica(stream, clock, "r2") as b, \
            Replica(stream, clock, "r3") as c:
        for _ in range(10):
            reports = await asyncio.gather(*(check.check_once(r) for r in (a, b, c)))
            active = await active_runs(db_pool, ids)
            on_account = await db_pool.fetch(
                "SELECT connection_id, count(*) AS n FROM portfolios WHERE id = ANY($1::uuid[])"
                " AND active_run_id IS NOT NULL GROUP BY connection_id", ids,
            )
            assert all(row["n"] == 1 for row in on_account)
            assert {str(r["id"]) for r in active} <= set(oldest)
            clock.advance(timedelta(minutes=1))
            await handlers.handle_completions(a, [
                incoming(completion(str(r["active_run_id"]), str(r["id"]), str(r["user_id"]),
                                    r["active_run_started_at"], clock.now()))
                for r in active
            ])
            if not any(r.claimed for r in reports) and not any(r.waiting for r in reports):
                break
        assert await active_runs(db_pool, ids) == []
        assert (await check.check_once(a)).claimed == 0  # daily: none due again before tomorrow
    events = await due_events(stream)
    assert sorted(e.portfolio_id for e in events) == sorted(oldest)
    failed = [RebalanceCompleted.model_validate_json(m.data) for m in
              await stream_messages(stream, stream.subjects.rebalance_completed)]
    assert sorted(f.portfolio_id for f in failed) == sorted(ids[:25])
    assert {f.errors[0].code for f in failed} == {SECOND_LIVE_PORTFOLIO}
