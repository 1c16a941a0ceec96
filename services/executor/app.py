"""The executor service: places each plan's orders (or simulates them in dry-run mode)."""

from __future__ import annotations

import asyncio

from faststream import FastStream
from pydantic_settings import SettingsConfigDict

from contracts.v1 import PlanCreated
from services.common.bus import Incoming
from services.common.exchanges.accounts import ExchangeAccounts
from services.common.logs import run_context
from services.common.runtime import Runtime
from services.common.settings import ServiceSettings
from services.executor import intents
from services.executor.engine import Executor
from services.executor.reconciler import run_reconciler

SERVICE = "executor"


class ExecutorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # Plans in flight at once; plans of one account still run one after another.
    executor_concurrency: int = 256
    executor_poll_seconds: float = 1.0
    # A leg of unknown outcome that look-ups do not find is sent again only this long after it was
    # sent (exchanges other than the paper one may take a while to list a new order).
    executor_resend_after_seconds: float = 60.0
    reconcile_interval_seconds: float = 30.0
    reconcile_after_seconds: float = 60.0
    reconcile_max_wait_seconds: float = intents.MAX_LOOKUP_WAIT_SECONDS


def build(settings: ExecutorSettings | None = None) -> tuple[Runtime, FastStream]:
    settings = settings or ExecutorSettings()
    runtime = Runtime(SERVICE, settings, description="Places the planned orders, sells first, exactly once.")
    relay = runtime.with_outbox()
    state: dict[str, Executor] = {}

    @runtime.on_startup
    async def _open() -> None:
        accounts = ExchangeAccounts.from_settings(runtime.pool, settings)
        state["executor"] = Executor(
            runtime.pool,
            accounts,
            relay,
            runtime.subjects,
            poll_interval=settings.executor_poll_seconds,
            lease_seconds=settings.scheduler_lease_seconds,
            resend_after_seconds=settings.executor_resend_after_seconds,
        )

    @runtime.on_shutdown
    async def _close() -> None:
        await state["executor"].accounts.close()

    @runtime.loop
    async def _reconcile(stop: asyncio.Event) -> None:
        await run_reconciler(
            runtime.pool,
            state["executor"].accounts,
            relay,
            runtime.subjects,
            stop,
            interval=settings.reconcile_interval_seconds,
            older_than_seconds=settings.reconcile_after_seconds,
            max_wait_seconds=settings.reconcile_max_wait_seconds,
        )

    async def handle(batch: list[Incoming[PlanCreated]]) -> None:
        for item in batch:
            with run_context(item.message.run_id):
                await state["executor"].execute(item.message)

    runtime.bus.consumer(
        subject=runtime.subjects.plan_created,
        purpose="plans",
        models=PlanCreated,
        handle=handle,
        concurrent=settings.executor_concurrency,
        ack_wait_seconds=120.0,
        description="Executes each plan's orders and emits order events and rebalance.completed.",
    )
    return runtime, runtime.app()
