"""The ledger service: the single writer of history. Every event of every run lands here once.

A batch is written in one transaction together with its inbox entries, so a redelivered event
(after a crash, a NATS restart, or a duplicate publish) finds its id and changes nothing.
"""

from __future__ import annotations

import logging

from faststream import FastStream

from contracts.v1 import (
    RunStage,
    event_models,
)
from services.common import metrics
from services.common.bus import Incoming
from services.common.crash import crash_point
from services.common.db import claim_inbox
from services.common.runtime import Runtime
from services.common.settings import ServiceSettings
from services.ledger.records import Rows
from services.ledger.store import write_rows
from services.ledger.views import PlanView, ValuedView

log = logging.getLogger("services.ledger")
SERVICE = "ledger"
CONSUMER = "ledger.events"


def build(settings: ServiceSettings | None = None) -> tuple[Runtime, FastStream]:
    settings = settings or ServiceSettings()
    runtime = Runtime(SERVICE, settings, description="Persists every run, order, trade, snapshot and activity.")
    s = runtime.subjects
    # The two largest events are read through the ledger's own views: what it stores, no more.
    models: dict[str, type[RunStage]] = {**event_models(s), s.portfolio_valued: ValuedView, s.plan_created: PlanView}

    async def handle(batch: list[Incoming[RunStage]]) -> None:
        async with runtime.pool.acquire() as conn, conn.transaction():
            fresh = await claim_inbox(conn, CONSUMER, [i.message_id for i in batch])
            rows = Rows()
            for item in batch:
                if item.message_id in fresh:
                    rows.add(item.message)
            crash_point("ledger.mid_write")
            await write_rows(conn, rows)
        crash_point("ledger.after_commit")  # written, not acked: redelivered, found in the inbox
        if len(fresh) < len(batch):
            metrics.MESSAGES_PROCESSED.labels(consumer=CONSUMER, outcome="duplicate").inc(len(batch) - len(fresh))
            log.debug("ledger: %d duplicate event(s) ignored", len(batch) - len(fresh))

    runtime.bus.consumer(
        subject=s.all_events,
        purpose="events",
        models=models,
        handle=handle,
        description="Writes every rebalance event into the history tables, exactly once.",
    )
    return runtime, runtime.app()
