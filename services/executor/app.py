"""The executor service: places each plan's orders (or simulates them in dry-run mode)."""

from __future__ import annotations

import asyncio

import ccxt.async_support as ccxt_async
from faststream import FastStream
from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from contracts.v1 import AbandonOrders, ConnectionChanged, PlanCreated
from services.common.bus import Incoming
from services.common.exchanges.accounts import KEY_REPLACED, ExchangeAccounts
from services.common.logs import run_context
from services.common.runtime import Runtime
from services.common.settings import ServiceSettings
from services.executor import intents
from services.executor.abandon import abandon_orders
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
    # The same wait for one exchange, where its order index lags more or less than most, as JSON:
    # EXECUTOR_RESEND_AFTER_SECONDS_BY_EXCHANGE='{"kraken": 300}'.
    executor_resend_after_seconds_by_exchange: dict[str, float] = {}
    reconcile_interval_seconds: float = 30.0
    reconcile_after_seconds: float = 60.0
    reconcile_max_wait_seconds: float = intents.MAX_LOOKUP_WAIT_SECONDS

    @field_validator("executor_resend_after_seconds")
    @classmethod
    def _positive_wait(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the wait before a leg is sent again must be more than 0 seconds")
        return value

    @field_validator("executor_resend_after_seconds_by_exchange")
    @classmethod
    def _known_exchanges(cls, value: dict[str, float]) -> dict[str, float]:
        for exchange_id, seconds in value.items():
            if exchange_id not in ccxt_async.exchanges:
                raise ValueError(f"{exchange_id!r} is not a ccxt exchange id (the paper exchange needs no wait)")
            if seconds <= 0:
                raise ValueError(f"the wait for {exchange_id} must be more than 0 seconds, not {seconds}")
        return value


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
            resend_after_seconds_by_exchange=settings.executor_resend_after_seconds_by_exchange,
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
    async def handle_abandon(batch: list[Incoming[AbandonOrders]]) -> None:
        for item in batch:
            await abandon_orders(runtime.pool, state["executor"].accounts, relay, runtime.subjects, item.message)

    runtime.bus.consumer(
        subject=runtime.subjects.orders_abandon,
        purpose="abandon",
        models=AbandonOrders,
        handle=handle_abandon,
        batch_size=10,
        description="Gives up on orders of unknown outcome at their owner's request: each is looked up"
        " once more, and the ones the exchange cannot answer for are recorded as abandoned.",
    )

    @runtime.bus.listener(runtime.subjects.connection_changed, ConnectionChanged, description=KEY_REPLACED)
    async def key_replaced(message: ConnectionChanged) -> None:
        state["executor"].accounts.forget(message.connection_id)
        await intents.look_up_again_soon(runtime.pool, message.connection_id)

    return runtime, runtime.app()
