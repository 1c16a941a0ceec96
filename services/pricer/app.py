"""The pricer: values each due portfolio from live balances, shared prices and market rules.

Its output id is derived from the run, so a redelivered due event produces a valuation that
downstream inboxes recognise; the pricer itself writes nothing and needs no inbox.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from faststream import FastStream

from contracts.envelope import Envelope, derived_id
from contracts.v1 import ConnectionChanged, PortfolioValued, RebalanceCompleted, RebalanceDue, RunError
from services.common import metrics
from services.common.bus import Incoming, TransientError
from services.common.crash import crash_point
from services.common.exchanges.accounts import KEY_REPLACED, ExchangeAccounts
from services.common.exchanges.port import ExchangeError, RetryLater
from services.common.logs import run_context
from services.common.runtime import Runtime
from services.common.settings import ServiceSettings
from services.pricer.valuation import ValuationError, value_portfolio

log = logging.getLogger("services.pricer")
SERVICE = "pricer"


def failed_run(due: RebalanceDue, code: str, message: str) -> RebalanceCompleted:
    return RebalanceCompleted(
        message_id=derived_id(due.run_id, "completed"),
        **due.next_stage(),
        status="failed",
        dry_run=due.strategy.dry_run,
        quote_currency=due.strategy.quote_currency,
        reason=message,
        errors=[RunError(stage=SERVICE, code=code, message=message)],
        completed_at=datetime.now(UTC),
    )


class Pricer:
    def __init__(self, accounts: ExchangeAccounts) -> None:
        self.accounts = accounts

    async def value(self, due: RebalanceDue) -> PortfolioValued:
        """Value one portfolio; raises ExchangeError / ValuationError."""
        connection_id = due.strategy.connection_id
        async with self.accounts.use(connection_id) as exchange:
            with metrics.time_exchange_call(exchange.exchange_id, "fetch_balance"):
                balances = await exchange.fetch_balance()
            if exchange.account_uid is not None:
                await self.accounts.record_account_uid(connection_id)
        if not due.strategy.dry_run:
            await self.accounts.refuse_live_run_on_shared_account(connection_id)
        prices = await self.accounts.prices(connection_id)
        markets = await self.accounts.markets(connection_id)
        valuation = value_portfolio(due.strategy, balances, prices, markets)
        return PortfolioValued(
            message_id=derived_id(due.run_id, "valued"),
            **due.next_stage(),
            strategy=due.strategy,
            holdings=valuation.holdings,
            prices=valuation.prices,
            total_value=valuation.total_value,
            markets=valuation.markets,
        )

    async def outcome(self, due: RebalanceDue) -> Envelope:
        """The valuation, or the run's failure when it cannot be valued; transient trouble raises."""
        with run_context(due.run_id):
            try:
                valued = await self.value(due)
            except RetryLater as exc:
                raise TransientError(f"exchange unavailable: {exc}") from exc
            except (ExchangeError, ValuationError) as exc:
                code = getattr(exc, "code", "valuation_error")
                log.error("FAILED: cannot value portfolio %s: %s", due.strategy.name, exc)
                return failed_run(due, code, str(exc))
            log.info(
                "SUCCESS: Portfolio value calculated: %s %s",
                f"{valued.total_value:,.2f}",
                due.strategy.quote_currency,
            )
            return valued


def build(settings: ServiceSettings | None = None) -> tuple[Runtime, FastStream]:
    settings = settings or ServiceSettings()
    runtime = Runtime(SERVICE, settings, description="Values due portfolios from balances and prices.")
    subjects = runtime.subjects
    state: dict[str, Pricer] = {}

    @runtime.on_startup
    async def _open() -> None:
        state["pricer"] = Pricer(ExchangeAccounts.from_settings(runtime.pool, settings))

    @runtime.on_shutdown
    async def _close() -> None:
        await state["pricer"].accounts.close()

    async def handle(batch: list[Incoming[RebalanceDue]]) -> None:
        pricer = state["pricer"]
        outcomes = await asyncio.gather(*(pricer.outcome(item.message) for item in batch))
        crash_point("pricer.before_publish")
        await runtime.bus.publish_many(
            [
                (
                    subjects.portfolio_valued
                    if isinstance(o, PortfolioValued)
                    else subjects.rebalance_completed,
                    o,
                )
                for o in outcomes
            ]
        )
        crash_point("pricer.after_publish")

    runtime.bus.consumer(
        subject=subjects.rebalance_due,
        purpose="due",
        models=RebalanceDue,
        handle=handle,
        description="Values each due portfolio and emits portfolio.valued (or a failed completion).",
    )

    @runtime.bus.listener(subjects.connection_changed, ConnectionChanged, description=KEY_REPLACED)
    async def key_replaced(message: ConnectionChanged) -> None:
        state["pricer"].accounts.forget(message.connection_id)

    @runtime.bus.responder(subjects.rpc_value_portfolio, description="Preview: value one portfolio now.")
    async def value_now(body: bytes) -> dict[str, Any]:
        try:
            due = RebalanceDue.model_validate_json(body)
            valued = await state["pricer"].value(due)
        except (ExchangeError, ValuationError, ValueError) as exc:
            return {"error": str(exc), "code": getattr(exc, "code", "invalid_request")}
        return valued.model_dump(mode="json")

    return runtime, runtime.app()
