"""The planner service: turns each valuation into a plan with the pure core (services.planner.core).

The plan's id is derived from the run, so a redelivered valuation yields a plan that the
executor's and ledger's inboxes recognise; the planner writes nothing itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faststream import FastStream

from contracts.envelope import derived_id
from contracts.v1 import PlanCreated, PortfolioValued
from services.common import metrics
from services.common.bus import Incoming
from services.common.crash import crash_point
from services.common.logs import run_context
from services.common.runtime import Runtime
from services.common.settings import ServiceSettings
from services.planner.core import plan_rebalance

log = logging.getLogger("services.planner")
SERVICE = "planner"
# Planning time after which the plans made so far are published (5-asset plans take ~0.7 ms,
# 100-asset ones ~9 ms of CPU).
CHUNK_SECONDS = 0.01


def plan_for(valued: PortfolioValued) -> PlanCreated:
    plan = plan_rebalance(
        valued.strategy,
        valued.holdings,
        valued.prices,
        valued.markets,
        scheduled=valued.triggered_by in ("scheduler", "threshold"),
    )
    return PlanCreated(
        message_id=derived_id(valued.run_id, "plan"),
        **valued.next_stage(),
        strategy=valued.strategy,
        decision=plan.decision,
        reason=plan.reason,
        portfolio_value=plan.portfolio_value,
        holdings=valued.holdings,
        prices=valued.prices,
        drift=plan.drift,
        orders=plan.orders,
        left_out=plan.left_out,
        expected_weights=plan.expected_weights,
        estimated_fees=plan.estimated_fees,
        turnover=plan.turnover,
    )


def describe(plan: PlanCreated) -> None:
    with run_context(plan.run_id):
        if plan.decision == "skip":
            log.info("INFO: No rebalance needed: %s", plan.reason)
        else:
            log.info("INFO: Generated %d rebalance orders (%s)", len(plan.orders), plan.reason)
        for leg in plan.left_out:
            log.info("INFO: Left out: %s", leg.reason)
    metrics.record_portfolio_valuation(
        plan.portfolio_id,
        plan.strategy.quote_currency,
        plan.portfolio_value,
        {d.asset: d.drift for d in plan.drift},
        plan.occurred_at,
    )


def build(settings: ServiceSettings | None = None) -> tuple[Runtime, FastStream]:
    settings = settings or ServiceSettings()
    runtime = Runtime(
        SERVICE, settings, description="Plans the orders that bring each portfolio back to target."
    )
    subjects = runtime.subjects

    async def handle(batch: list[Incoming[PortfolioValued]]) -> None:
        # Plans leave in chunks of about CHUNK_SECONDS of planning while the rest of the batch is
        # planned, so the executor starts on the first plans instead of waiting for the whole
        # batch. The batch is acked only once every chunk is acknowledged; a redelivered batch
        # re-publishes the same plan ids, which the downstream inboxes recognise.
        sending: list[asyncio.Task[None]] = []
        chunk: list[PlanCreated] = []
        chunk_started = time.perf_counter()
        try:
            for item in batch:
                plan = plan_for(item.message)
                describe(plan)
                chunk.append(plan)
                if time.perf_counter() - chunk_started >= CHUNK_SECONDS:
                    sending.append(publish(chunk))
                    chunk = []
                    await asyncio.sleep(0)  # let the chunk go out before planning on
                    chunk_started = time.perf_counter()
            if chunk:
                sending.append(publish(chunk))
        finally:
            await asyncio.gather(*sending)
        crash_point("planner.after_publish")

    def publish(plans: list[PlanCreated]) -> asyncio.Task[None]:
        crash_point("planner.before_publish")
        return asyncio.ensure_future(runtime.bus.publish_many([(subjects.plan_created, p) for p in plans]))

    runtime.bus.consumer(
        subject=subjects.portfolio_valued,
        purpose="valued",
        models=PortfolioValued,
        handle=handle,
        description="Plans each valued portfolio and emits plan.created.",
    )

    @runtime.bus.responder(subjects.rpc_preview_plan, description="Preview: plan a valued portfolio.")
    async def preview(body: bytes) -> dict[str, Any]:
        try:
            return plan_for(PortfolioValued.model_validate_json(body)).model_dump(mode="json")
        except ValueError as exc:
            return {"error": str(exc), "code": "invalid_request"}

    return runtime, runtime.app()
