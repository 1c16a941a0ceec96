"""Test support for the pipeline: seed a user, paper account and portfolio; run services
in-process on real NATS and PostgreSQL; build due events; wait for history rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import nats

from contracts.envelope import derived_id
from contracts.v1 import RebalanceDue, Strategy
from services.common.exchanges.paper import fund_account, seed_markets
from services.common.settings import ServiceSettings
from services.executor.app import ExecutorSettings
from services.executor.app import build as build_executor
from services.ledger.app import build as build_ledger
from services.planner.app import build as build_planner
from services.pricer.app import build as build_pricer


def settings_for(database_url: str, nats_url: str, namespace: str, **extra: Any) -> ServiceSettings:
    return ServiceSettings(
        database_url=database_url,
        nats_url=nats_url,
        bus_namespace=namespace,
        stream_name=namespace.upper(),
        ops_port=0,
        **extra,
    )


@dataclass(frozen=True)
class Seeded:
    user_id: str
    connection_id: str
    portfolio_id: str
    account: str
    strategy: Strategy


async def seed_portfolio(
    pool: asyncpg.Pool,
    *,
    weights: Mapping[str, str | int],
    balances: Mapping[str, str | int],
    threshold: str = "5",
    dry_run: bool = False,
    name: str = "My Portfolio",
    max_orders: int | None = None,
) -> Seeded:
    await seed_markets(pool)
    account = f"acct-{uuid.uuid4().hex[:8]}"
    await fund_account(pool, account, {k: Decimal(str(v)) for k, v in balances.items()})
    user_id = await pool.fetchval(
        "INSERT INTO users (email, name) VALUES ($1, 'Test') RETURNING id::text", f"{account}@example.com"
    )
    connection_id = await pool.fetchval(
        "INSERT INTO exchange_connections (user_id, exchange_id, label, paper_account)"
        " VALUES ($1::uuid, 'paper', 'paper', $2) RETURNING id::text",
        user_id,
        account,
    )
    target = {k: str(v) for k, v in weights.items()}
    portfolio_id = await pool.fetchval(
        "INSERT INTO portfolios (user_id, connection_id, name, target_weights, rebalance_enabled,"
        " rebalance_threshold, dry_run, max_orders_per_rebalance)"
        " VALUES ($1::uuid, $2::uuid, $3, $4, false, $5, $6, $7) RETURNING id::text",
        user_id,
        connection_id,
        name,
        target,
        Decimal(threshold),
        dry_run,
        max_orders,
    )
    strategy = Strategy(
        portfolio_id=portfolio_id,
        user_id=user_id,
        name=name,
        connection_id=connection_id,
        exchange_id="paper",
        target_weights={k: Decimal(v) for k, v in target.items()},
        threshold=Decimal(threshold),
        dry_run=dry_run,
        max_orders=max_orders,
    )
    return Seeded(user_id, connection_id, portfolio_id, account, strategy)


def due_event(
    seeded: Seeded, *, run_id: str | None = None, triggered_by: str = "manual", started_at: datetime | None = None
) -> RebalanceDue:
    """``seeded``'s due event (``started_at``: when the run was claimed; now by default)."""
    run_id = run_id or str(uuid.uuid4())
    now = datetime.now(UTC)
    return RebalanceDue(
        message_id=derived_id(run_id, "due"),
        correlation_id=run_id,
        run_id=run_id,
        portfolio_id=seeded.portfolio_id,
        user_id=seeded.user_id,
        triggered_by=triggered_by,  # type: ignore[arg-type]
        started_at=started_at or now,
        strategy=seeded.strategy,
        due_at=now,
    )


async def publish(nats_url: str, subject: str, payload: bytes, message_id: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(subject, payload, headers={"Nats-Msg-Id": message_id})
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def running(*apps: Any) -> AsyncIterator[None]:
    """Start FastStream apps in this process; stop them afterwards."""
    started = []
    try:
        for app in apps:
            await app.start()
            started.append(app)
        yield
    finally:
        for app in reversed(started):
            with contextlib.suppress(Exception):
                await app.stop()


@contextlib.asynccontextmanager
async def in_process_pipeline(
    database_url: str, nats_url: str, namespace: str, *, log_level: str = "INFO", **executor: Any
) -> AsyncIterator[str]:
    """Ledger, pricer, planner and executor in this process; yields the subject namespace.
    ``executor``: settings of the executor that differ from the tests' (below).

    Starting a service replaces the root logger's handlers (``setup_logging``): they are put back
    afterwards, so this process's logging is as it was.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    settings = settings_for(database_url, nats_url, namespace, log_level=log_level)
    # The reconciler runs often, as in the process stacks (tests.support.processes), and a leg of
    # unknown outcome is sent again 5 s after it was sent, not 60 s (a little after the lookups that
    # follow a lost answer, so that the wait is exercised).
    executor_settings = ExecutorSettings(**{
        **settings.model_dump(),
        "executor_poll_seconds": 0.2,
        "reconcile_interval_seconds": 2,
        "reconcile_after_seconds": 3,
        "executor_resend_after_seconds": 5,
        **executor,
    })
    apps = [
        build_ledger(settings)[1],
        build_pricer(settings)[1],
        build_planner(settings)[1],
        build_executor(executor_settings)[1],
    ]
    try:
        async with running(*apps):
            yield namespace
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        await delete_stream(nats_url, settings.stream_name)


async def wait_for(pool: asyncpg.Pool, query: str, *args: Any, timeout: float = 30.0) -> Any:
    """Poll until the query returns a truthy value; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await pool.fetchval(query, *args)
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for: {query} {args}")
        await asyncio.sleep(0.1)


async def delete_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


async def stream_messages(nats_url: str, stream: str, subject_filter: str) -> list[tuple[str, bytes]]:
    """Every message stored on the stream under ``subject_filter``: (subject, payload)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject_filter, stream=stream)
        out: list[tuple[str, bytes]] = []
        while True:
            try:
                batch = await sub.fetch(100, timeout=0.5)
            except TimeoutError:  # nats-py raises its own subclass or asyncio's: both are TimeoutError
                break
            for m in batch:
                out.append((m.subject, m.data))
                await m.ack()
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def wait_until_drained(nats_url: str, stream: str, timeout: float = 30.0) -> None:
    """Until every durable consumer of the stream has nothing pending and nothing unacked."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            infos = await js.consumers_info(stream)
            busy = [c.name for c in infos if c.config.durable_name and (c.num_pending or c.num_ack_pending)]
            if not busy:
                return
            if asyncio.get_running_loop().time() > deadline:
                states = [(c.name, c.num_pending, c.num_ack_pending, c.num_redelivered) for c in infos]
                raise AssertionError(f"consumers still busy: {states}")
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
