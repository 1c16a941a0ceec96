"""The reconciler, on real PostgreSQL with the paper exchange: it resolves legs of unknown outcome
by client order id, reports each one it resolves to the ledger (through the executor's outbox,
in the resolving transaction), waits for a run the ledger has not recorded yet, and looks at every
unknown leg in turn, however many never reached the exchange."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

import asyncpg
import pytest
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY

from contracts.envelope import derived_id
from contracts.subjects import Subjects
from contracts.v1 import AbandonOrders, OrdersReported
from services.common.bus import Bus, OutboxRelay
from services.common.devstack import free_port
from services.common.exchanges.accounts import ExchangeAccounts, KeyUnreadable
from services.common.exchanges.port import OrderRequest
from services.common.secrets import Credentials, SecretBox
from services.executor.abandon import abandon_orders
from services.executor.reconciler import reconcile_once, run_reconciler
from tests.faults.helpers import eventually
from tests.support.ccxt_pipeline import use_exchange_clients
from tests.support.pipeline import Seeded, seed_portfolio

pytestmark = pytest.mark.integration


async def record_run(pool: asyncpg.Pool, seeded: Seeded, run_id: str, status: str = "running") -> None:
    """The ledger's row of a run (the reconciler reports a leg with its run's fields)."""
    await pool.execute(
        "INSERT INTO rebalance_runs (id, portfolio_id, user_id, triggered_by, started_at, quote_currency, status)"
        " VALUES ($1::uuid, $2::uuid, $3::uuid, 'manual', $4, 'USD', $5)",
        run_id,
        seeded.portfolio_id,
        seeded.user_id,
        datetime(2026, 11, 22, tzinfo=UTC),
        status,
    )


async def unknown_leg(pool: asyncpg.Pool, seeded: Seeded, run_id: str, leg: int, minutes_ago: int) -> str:
    """A BTC buy left 'sending' ``minutes_ago``: the exchange may or may not have it."""
    cid = f"{run_id[:8]}-{leg}"
    await pool.execute(
        "INSERT INTO order_intents (client_order_id, run_id, leg, portfolio_id, user_id, connection_id, symbol,"
        " side, amount, state, attempts, updated_at)"
        " VALUES ($1, $2::uuid, $3, $4::uuid, $5::uuid, $6::uuid, 'BTC/USD', 'buy', 0.01, 'sending', 1,"
        " now() - make_interval(mins => $7))",
        cid,
        run_id,
        leg,
        seeded.portfolio_id,
        seeded.user_id,
        seeded.connection_id,
        minutes_ago,
    )
    return cid


async def states(pool: asyncpg.Pool, cids: list[str]) -> list[str]:
    rows = await pool.fetch(
        "SELECT state FROM order_intents WHERE client_order_id = ANY($1::text[]) ORDER BY client_order_id", cids
    )
    return [r["state"] for r in rows]


async def reports(pool: asyncpg.Pool, subjects: Subjects, run_id: str) -> list[OrdersReported]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE producer = 'executor' AND subject = $1"
        " AND convert_from(payload, 'UTF8') LIKE $2 ORDER BY id",
        subjects.orders_reported,
        f"%{run_id}%",
    )
    return [OrdersReported.model_validate_json(bytes(r["payload"])) for r in rows]


@dataclass(frozen=True)
class Reconciling:
    """A paper account with cash, and what the reconciler works with."""

    seeded: Seeded
    accounts: ExchangeAccounts
    relay: OutboxRelay
    subjects: Subjects
    pool: asyncpg.Pool

    async def once(self, *, batch: int = 500) -> int:
        """One reconciler pass over legs a minute old or more."""
        return await reconcile_once(
            self.pool, self.accounts, self.relay, self.subjects, older_than_seconds=60, batch=batch
        )


@pytest.fixture
async def reconciling(db_pool: asyncpg.Pool, namespace: str) -> Reconciling:
    seeded = await seed_portfolio(db_pool, weights={"BTC": 50, "USD": 50}, balances={"USD": "100000"})
    relay = OutboxRelay(cast(Bus, None), db_pool, "executor")  # never flushed here: the outbox is read
    return Reconciling(seeded, ExchangeAccounts(db_pool), relay, Subjects(namespace), db_pool)


async def test_the_reconciler_reports_what_it_resolves_and_looks_at_every_unknown_leg_in_turn(
    db_pool: asyncpg.Pool, reconciling: Reconciling
) -> None:
    seeded, accounts, subjects = reconciling.seeded, reconciling.accounts, reconciling.subjects

    async def reconcile() -> int:
        return await reconciling.once(batch=2)

    # Two legs that never reached the exchange, older than the one that did: a pass looks at two.
    run_id = str(uuid.uuid4())
    await record_run(db_pool, seeded, run_id)
    never_sent = [await unknown_leg(db_pool, seeded, run_id, leg, 30 - leg) for leg in (0, 1)]
    placed = await unknown_leg(db_pool, seeded, run_id, 2, 20)
    # A leg of a run the ledger has not recorded yet: its report would lack the run's fields.
    late_run = str(uuid.uuid4())
    late = await unknown_leg(db_pool, seeded, late_run, 0, 25)
    async with accounts.use(seeded.connection_id) as exchange:
        for cid in (placed, late):
            filled = await exchange.create_order(OrderRequest("BTC/USD", "buy", Decimal("0.01"), cid))
            assert filled.status == "closed"

    assert await reconcile() == 0  # the two oldest, not found: they go to the back of the queue
    assert await reconcile() == 1  # the late run's leg waits; the placed one is found
    assert await states(db_pool, [*never_sent, placed]) == ["sending", "sending", "filled"]
    [report] = await reports(db_pool, subjects, run_id)
    [order] = report.orders
    assert order.leg == 2 and order.outcome == "filled" and order.client_order_id == placed
    assert order.event_id == derived_id(run_id, "order", 2, "filled") and order.exchange_id == "paper"
    assert order.fill.filled == Decimal("0.01") and order.fill.value == order.fill.cost > 0
    assert (report.triggered_by, report.user_id, report.portfolio_id) == ("manual", seeded.user_id, seeded.portfolio_id)

    assert await states(db_pool, [late]) == ["sending"] and await reports(db_pool, subjects, late_run) == []
    await record_run(db_pool, seeded, late_run)
    await db_pool.execute(
        "UPDATE order_intents SET updated_at = now() - interval '1 hour' WHERE client_order_id = $1", late
    )
    assert await reconcile() == 1
    assert await states(db_pool, [late]) == ["filled"]
    assert [o.outcome for r in await reports(db_pool, subjects, late_run) for o in r.orders] == ["filled"]

    # Resolved legs are not looked at or reported again.
    await db_pool.execute(
        "UPDATE order_intents SET updated_at = now() - interval '1 hour' WHERE client_order_id = ANY($1::text[])",
        [*never_sent, placed, late],
    )
    assert await reconcile() == 0 and await reconcile() == 0
    assert len(await reports(db_pool, subjects, run_id)) == 1
    assert await states(db_pool, never_sent) == ["sending", "sending"]


async def test_an_order_still_resting_after_its_run_ended_is_canceled_and_reported(
    db_pool: asyncpg.Pool, reconciling: Reconciling
) -> None:
    # A limit buy far below the market rests. While its run is running, the run follows it; once
    # the run has ended (it stopped with the order's outcome unknown), nobody does: the reconciler
    # cancels it, so it cannot fill under a newer run of the portfolio, and reports it.
    seeded, accounts, subjects = reconciling.seeded, reconciling.accounts, reconciling.subjects
    running, ended = str(uuid.uuid4()), str(uuid.uuid4())
    await record_run(db_pool, seeded, running)
    await record_run(db_pool, seeded, ended, status="failed")
    legs = {run_id: await unknown_leg(db_pool, seeded, run_id, 0, 10) for run_id in (running, ended)}
    async with accounts.use(seeded.connection_id) as exchange:
        for cid in legs.values():
            request = OrderRequest("BTC/USD", "buy", Decimal("0.2"), cid, order_type="limit", price=Decimal("100"))
            assert (await exchange.create_order(request)).status == "open"

    assert await reconciling.once() == 1
    assert await states(db_pool, [legs[running]]) == ["sending"]
    assert await states(db_pool, [legs[ended]]) == ["canceled"]
    async with accounts.use(seeded.connection_id) as exchange:
        still = await exchange.fetch_order_by_client_id("BTC/USD", legs[running])
        canceled = await exchange.fetch_order_by_client_id("BTC/USD", legs[ended])
    assert still is not None and still.status == "open"
    assert canceled is not None and canceled.status == "canceled" and canceled.filled == 0
    [report] = await reports(db_pool, subjects, ended)
    [order] = report.orders
    assert order.outcome == "rejected" and order.fill.status == "canceled" and report.reconciled
    assert order.error is not None and order.error.code == "not_filled"
    assert await reports(db_pool, subjects, running) == []


async def test_a_leg_the_paper_exchange_never_took_is_resolved_as_not_placed_once_its_run_has_ended(
    db_pool: asyncpg.Pool, reconciling: Reconciling
) -> None:
    # The paper exchange lists an order the moment it takes it, so a leg of an ended run that it
    # does not have never reached it, and nobody will send it now: not placed. While its run is
    # running, the run's retry may still send it; while the ledger has no run, nothing is known.
    seeded, subjects = reconciling.seeded, reconciling.subjects
    ended, running, unrecorded = (str(uuid.uuid4()) for _ in range(3))
    await record_run(db_pool, seeded, ended, status="failed")
    await record_run(db_pool, seeded, running)
    legs = {run_id: await unknown_leg(db_pool, seeded, run_id, 0, 10) for run_id in (ended, running, unrecorded)}

    assert await reconciling.once() == 1
    assert await states(db_pool, [legs[ended]]) == ["failed"]
    assert await states(db_pool, [legs[running], legs[unrecorded]]) == ["sending", "sending"]
    [report] = await reports(db_pool, subjects, ended)
    [order] = report.orders
    assert report.reconciled and (order.leg, order.outcome, order.client_order_id) == (0, "failed", legs[ended])
    assert order.error is not None and order.error.code == "not_placed" and legs[ended] in order.error.message
    assert order.fill.filled == 0 and order.event_id == derived_id(ended, "order", 0, "failed")
    assert await reports(db_pool, subjects, running) == [] and await reports(db_pool, subjects, unrecorded) == []
    async with reconciling.accounts.use(seeded.connection_id) as exchange:
        assert await exchange.fetch_order_by_client_id("BTC/USD", legs[ended]) is None  # nothing was sent


async def test_a_leg_never_found_is_looked_up_less_and_less_often(
    db_pool: asyncpg.Pool, reconciling: Reconciling
) -> None:
    # Each look-up of a leg is a call on its account's rate limit. A leg waits at least a minute
    # between looks, an eighth of how long it had been unresolved at its last look if longer, and
    # at most an hour: one the exchange never lists is not looked up once a minute forever.
    seeded = reconciling.seeded
    run_id = str(uuid.uuid4())
    await record_run(db_pool, seeded, run_id)  # running: a paper miss is not final yet

    async def leg(n: int, sent_minutes_ago: int, looked_minutes_ago: int) -> str:
        cid = await unknown_leg(db_pool, seeded, run_id, n, looked_minutes_ago)
        await db_pool.execute(
            "UPDATE order_intents SET sent_at = now() - make_interval(mins => $2) WHERE client_order_id = $1",
            cid,
            sent_minutes_ago,
        )
        return cid

    fresh = await leg(0, 3, 2)  # unresolved a minute when last looked at: waits a minute
    waiting = await leg(1, 82, 2)  # unresolved 80 minutes: waits 10
    due = await leg(2, 91, 11)  # unresolved 80 minutes, looked at 11 minutes ago
    old = await leg(3, 60 * 24 * 30, 61)  # unresolved a month: waits an hour, no more
    old_waiting = await leg(4, 60 * 24 * 30, 59)

    async def looked_at_now() -> set[str]:
        rows = await db_pool.fetch(
            "SELECT client_order_id FROM order_intents WHERE run_id = $1::uuid AND updated_at > now() - interval '5 s'",
            run_id,
        )
        return {r["client_order_id"] for r in rows}

    assert await reconciling.once() == 0
    assert await looked_at_now() == {fresh, due, old}
    assert await states(db_pool, [fresh, waiting, due, old, old_waiting]) == ["sending"] * 5
    # Looked at just now, none is due again yet.
    await db_pool.execute(
        "UPDATE order_intents SET updated_at = updated_at - interval '5 s' WHERE run_id = $1::uuid", run_id
    )
    assert await reconciling.once() == 0 and await looked_at_now() == set()


async def test_abandoning_records_what_a_last_look_up_finds_and_gives_up_only_what_nobody_can_answer_for(
    db_pool: asyncpg.Pool, reconciling: Reconciling, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The owner gives up on legs of unknown outcome (AbandonOrders). Each is looked up once more:
    # a fill found is recorded as filled, a resting order canceled, a leg the paper exchange never
    # took recorded as not placed; only a leg whose exchange cannot answer is abandoned. Legs whose
    # run still follows them, or that the ledger has not recorded, and other connections' legs
    # named in the command are left as they are.
    seeded, accounts, subjects = reconciling.seeded, reconciling.accounts, reconciling.subjects
    ended, running, unrecorded = (str(uuid.uuid4()) for _ in range(3))
    await record_run(db_pool, seeded, ended, status="failed")
    await record_run(db_pool, seeded, running)
    filled, resting, never_sent = [await unknown_leg(db_pool, seeded, ended, leg, 10) for leg in range(3)]
    followed = await unknown_leg(db_pool, seeded, running, 0, 10)
    not_recorded = await unknown_leg(db_pool, seeded, unrecorded, 0, 10)
    async with accounts.use(seeded.connection_id) as exchange:
        assert (await exchange.create_order(OrderRequest("BTC/USD", "buy", Decimal("0.01"), filled))).filled > 0
        limit = OrderRequest("BTC/USD", "buy", Decimal("0.2"), resting, order_type="limit", price=Decimal("100"))
        assert (await exchange.create_order(limit)).status == "open"
    # Another user's paper account, and a Kraken account whose exchange no longer answers.
    other = await seed_portfolio(db_pool, weights={"BTC": 50, "USD": 50}, balances={"USD": "1000"})
    other_run = str(uuid.uuid4())
    await record_run(db_pool, other, other_run, status="failed")
    others = await unknown_leg(db_pool, other, other_run, 0, 10)
    box = use_exchange_clients(monkeypatch)
    sealed, key_version = box.seal(Credentials(api_key="revoked-key", secret="cmV2b2tlZC1zZWNyZXQ="))
    gone = await db_pool.fetchval(
        "INSERT INTO exchange_connections (user_id, exchange_id, label, credentials_enc, key_version, api_key_hint,"
        " api_url) VALUES ($1::uuid, 'kraken', 'closed', $2, $3, 're…ey', $4) RETURNING id::text",
        seeded.user_id, sealed, key_version, f"http://127.0.0.1:{free_port()}",
    )
    gone_run = str(uuid.uuid4())
    await record_run(db_pool, seeded, gone_run, status="partial")
    lost = await unknown_leg(db_pool, dataclasses.replace(seeded, connection_id=gone), gone_run, 0, 10)

    def command(connection_id: str, *cids: str) -> AbandonOrders:
        return AbandonOrders(
            correlation_id=str(uuid.uuid4()), user_id=seeded.user_id, connection_id=connection_id,
            client_order_ids=list(cids),
        )

    done = await abandon_orders(
        db_pool, accounts, reconciling.relay, subjects,
        command(seeded.connection_id, filled, resting, never_sent, followed, not_recorded, others, lost),
    )
    assert done.resolved == {filled: "filled", resting: "canceled", never_sent: "failed"} and done.abandoned == []
    assert set(done.kept) == {followed, not_recorded, others, lost}
    assert "still running" in done.kept[followed] and "not recorded" in done.kept[not_recorded]
    assert await states(db_pool, [followed, not_recorded, others, lost]) == ["sending"] * 4
    [report] = [r for r in await reports(db_pool, subjects, ended) if r.orders[0].client_order_id == filled]
    assert report.reconciled and report.orders[0].outcome == "filled" and report.orders[0].fill.filled > 0

    # The Kraken account's exchange cannot be reached: abandoned, outcome unknown, and reported.
    kraken = ExchangeAccounts(db_pool)
    try:
        done = await abandon_orders(db_pool, kraken, reconciling.relay, subjects, command(gone, lost))
        again = await abandon_orders(db_pool, kraken, reconciling.relay, subjects, command(gone, lost))
    finally:
        await kraken.close()
    assert done.abandoned == [lost] and done.resolved == {} and done.kept == {}
    assert await states(db_pool, [lost]) == ["abandoned"]
    [report] = await reports(db_pool, subjects, gone_run)
    [order] = report.orders
    assert report.reconciled and order.outcome == "failed" and order.exchange_id == "kraken"
    assert order.error is not None and order.error.code == "abandoned" and lost in order.error.message
    assert order.event_id == derived_id(gone_run, "order", 0, "abandoned")
    # Given again (a redelivered command), it changes nothing and reports nothing more.
    assert again.abandoned == [] and lost in again.kept and len(await reports(db_pool, subjects, gone_run)) == 1
    # Other tests' reconciler passes count what they resolve: leave no leg of unknown outcome.
    await db_pool.execute(
        "UPDATE order_intents SET state = 'failed' WHERE client_order_id = ANY($1::text[])",
        [followed, not_recorded, others],
    )


async def test_a_leg_whose_key_cannot_be_opened_does_not_hold_up_the_others(
    db_pool: asyncpg.Pool, reconciling: Reconciling, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection sealed with a key no longer configured (removed before re-sealing): its leg is
    # looked at first, fails, and goes to the back; the paper leg behind it is still resolved.
    # Before, the pass died on it every time, so no leg behind it was ever looked at again.
    seeded = reconciling.seeded
    use_exchange_clients(monkeypatch)
    sealed, key_version = SecretBox([Fernet.generate_key()]).seal(Credentials(api_key="k" * 12, secret="s" * 12))
    sealed_away = await db_pool.fetchval(
        "INSERT INTO exchange_connections (user_id, exchange_id, label, credentials_enc, key_version, api_key_hint)"
        " VALUES ($1::uuid, 'kraken', 'sealed away', $2, $3, '…') RETURNING id::text",
        seeded.user_id, sealed, key_version,
    )
    # And one on an exchange ccxt no longer knows (dropped in an upgrade): an error nobody foresaw.
    retired = await db_pool.fetchval(
        "INSERT INTO exchange_connections (user_id, exchange_id, label, api_key_hint)"
        " VALUES ($1::uuid, 'retiredexchange', 'retired', '…') RETURNING id::text",
        seeded.user_id,
    )
    ended = str(uuid.uuid4())
    await record_run(db_pool, seeded, ended, status="failed")
    unreadable = await unknown_leg(db_pool, dataclasses.replace(seeded, connection_id=sealed_away), ended, 0, 30)
    unforeseen = await unknown_leg(db_pool, dataclasses.replace(seeded, connection_id=retired), ended, 1, 20)
    behind = await unknown_leg(db_pool, seeded, ended, 2, 10)

    assert await reconciling.once() == 1
    assert await states(db_pool, [unreadable, unforeseen, behind]) == ["sending", "sending", "failed"]
    looked = await db_pool.fetchval(
        "SELECT bool_and(updated_at > now() - interval '5 seconds') FROM order_intents"
        " WHERE client_order_id = ANY($1::text[])",
        [unreadable, unforeseen],
    )
    await db_pool.execute(
        "UPDATE order_intents SET state = 'failed' WHERE client_order_id = ANY($1::text[])", [unreadable, unforeseen]
    )
    assert looked, "the legs that failed go to the back of the queue"
    async with reconciling.accounts.use(seeded.connection_id):
        pass
    with pytest.raises(KeyUnreadable, match="cannot be decrypted"):
        async with reconciling.accounts.use(sealed_away):
            pass


async def test_the_reconciler_reports_how_many_orders_are_of_unknown_outcome_and_how_old_the_oldest_is(
    db_pool: asyncpg.Pool, reconciling: Reconciling
) -> None:
    # rebalancer_orders_unresolved and rebalancer_oldest_unresolved_order_age_seconds, set after
    # every pass: an order left unknown for long (a key refused, an exchange that never lists it)
    # raises the OrdersOfUnknownOutcome alert instead of waiting for someone to read the history.
    seeded = reconciling.seeded
    running = str(uuid.uuid4())
    await record_run(db_pool, seeded, running)  # its legs stay unresolved: the run follows them
    legs = [await unknown_leg(db_pool, seeded, running, leg, 1) for leg in range(2)]
    await db_pool.execute(
        "UPDATE order_intents SET sent_at = now() - interval '3 hours' WHERE client_order_id = $1", legs[0]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_reconciler(
        db_pool, reconciling.accounts, reconciling.relay, reconciling.subjects, stop, interval=0.05,
        older_than_seconds=60,
    ))
    try:
        async def reported() -> bool:
            age = REGISTRY.get_sample_value("rebalancer_oldest_unresolved_order_age_seconds")
            return age is not None and age >= 3 * 3600

        await eventually(reported, "the reconciler to report the oldest unknown order", timeout=10, interval=0.05)
    finally:
        stop.set()
        await task
    expected = await db_pool.fetchval("SELECT count(*) FROM order_intents WHERE state IN ('sending', 'open')")
    assert REGISTRY.get_sample_value("rebalancer_orders_unresolved") == expected >= 2
    await db_pool.execute("UPDATE order_intents SET state = 'failed' WHERE client_order_id = ANY($1::text[])", legs)
