"""Wiring: the scheduler's consumers and its check loop on the shared runtime."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass

from faststream import FastStream

from contracts.v1.messages import RebalanceCompleted, RebalanceRequested, SchedulerControl
from services.common.bus import Incoming, OutboxRelay
from services.common.runtime import Runtime
from services.scheduler import repository as repo
from services.scheduler.clock import Clock, SystemClock
from services.scheduler.context import SchedulerContext, log
from services.scheduler.handlers import handle_completions, handle_control, handle_requests
from services.scheduler.loop import CheckLoop
from services.scheduler.runs import SECOND_LIVE_PORTFOLIO
from services.scheduler.settings import SchedulerSettings


@dataclass
class SchedulerService:
    runtime: Runtime
    loop: CheckLoop | None = None
    relay: OutboxRelay | None = None

    @property
    def ctx(self) -> SchedulerContext:
        if self.loop is None:
            raise RuntimeError("the scheduler is used before start-up")
        return self.loop.ctx


async def warn_of_shared_accounts(ctx: SchedulerContext) -> None:
    """Name accounts that have several live portfolios: each rebalances the whole account, so they
    would undo each other's trades. The oldest keeps the account; the others' live runs fail
    (runs.account_taken) until the user chooses."""
    for row in await repo.shared_live_accounts(ctx.pool):
        first, *others = row["portfolios"]
        log.warning(
            "[Scheduler] Exchange connection %s has %d live portfolios: each rebalances the whole account,"
            " so they would undo each other's trades. %s was made first and keeps trading; the live runs"
            " of %s fail with %s. Make all but one a dry run, or move them to their own accounts",
            row["connection_id"], len(row["portfolios"]), first, ", ".join(others), SECOND_LIVE_PORTFOLIO,
        )


def build(
    settings: SchedulerSettings | None = None, clock: Clock | None = None
) -> tuple[FastStream, SchedulerService]:
    settings = settings or SchedulerSettings()
    runtime = Runtime("scheduler", settings, description="Finds due portfolios and claims one run each")
    service = SchedulerService(runtime)
    replica = settings.scheduler_replica_id or f"{socket.gethostname()}:{os.getpid()}:{id(service):x}"
    subjects = settings.subjects

    relay = service.relay = runtime.with_outbox()

    @runtime.on_startup
    async def _context() -> None:
        ctx = SchedulerContext(runtime.pool, relay, settings, clock or SystemClock(), replica)
        service.loop = CheckLoop(ctx)
        await warn_of_shared_accounts(ctx)

    @runtime.loop
    async def _check_loop(stop: asyncio.Event) -> None:
        assert service.loop is not None
        await service.loop.run(stop)

    async def on_requests(batch: list[Incoming[RebalanceRequested]]) -> None:
        await handle_requests(service.ctx, batch)

    async def on_completions(batch: list[Incoming[RebalanceCompleted]]) -> None:
        await handle_completions(service.ctx, batch)

    async def on_control(batch: list[Incoming[SchedulerControl]]) -> None:
        assert service.loop is not None
        await handle_control(service.ctx, batch, service.loop.wake)

    bus = runtime.bus
    bus.consumer(subject=subjects.rebalance_request, purpose="requests", models=RebalanceRequested,
                 handle=on_requests)
    bus.consumer(subject=subjects.rebalance_completed, purpose="completions", models=RebalanceCompleted,
                 handle=on_completions)
    # Control is rare and must reach this replica's loop quickly: small batches.
    bus.consumer(subject=subjects.scheduler_control, purpose="control", models=SchedulerControl,
                 handle=on_control, batch_size=10)
    return runtime.app(), service
