"""The services' FastStream apps as AsyncAPI documents, and which v1 message travels where.

Each app is built with fixed settings (so the environment cannot change the document) and never
started: building registers the subscribers and connects to nothing. ``faststream docs gen
--factory contracts.asyncapi._apps:planner`` works on these factories too; ``document`` adds what
the code cannot state by itself (see ``CONSUMES`` and ``PUBLISHES``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from faststream import FastStream
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts.subjects import Subjects
from contracts.v1 import (
    AbandonOrders,
    ConnectionChanged,
    PlanCreated,
    PortfolioValued,
    RebalanceCompleted,
    RebalanceDue,
    RebalanceRequested,
    SchedulerControl,
    event_models,
)

SUBJECTS = Subjects()
NATS_URL = "nats://127.0.0.1:4222"

# The model of each stream subject (what the ledger decodes on evt.>).
EVENT_MODELS: dict[str, type[BaseModel]] = dict(event_models(SUBJECTS))

# The bus consumers take the raw batch, so FastStream sees no payload type: the model of every
# consumed stream subject is stated here. An unlisted consumer fails the generation.
CONSUMES: dict[str, dict[str, list[type[BaseModel]]]] = {
    "pricer": {SUBJECTS.rebalance_due: [RebalanceDue], SUBJECTS.connection_changed: [ConnectionChanged]},
    "planner": {SUBJECTS.portfolio_valued: [PortfolioValued]},
    "executor": {
        SUBJECTS.plan_created: [PlanCreated],
        SUBJECTS.orders_abandon: [AbandonOrders],
        SUBJECTS.connection_changed: [ConnectionChanged],
    },
    "ledger": {SUBJECTS.all_events: list(EVENT_MODELS.values())},
    "scheduler": {
        SUBJECTS.rebalance_request: [RebalanceRequested],
        SUBJECTS.rebalance_completed: [RebalanceCompleted],
        SUBJECTS.scheduler_control: [SchedulerControl],
    },
}

# Services publish through Bus.publish_event / the outbox, not FastStream publishers.
PUBLISHES: dict[str, list[str]] = {
    "pricer": [SUBJECTS.portfolio_valued, SUBJECTS.rebalance_completed],
    "planner": [SUBJECTS.plan_created],
    # Order outcomes go out batched (one OrdersReported per set of legs placed together).
    "executor": [SUBJECTS.orders_reported, SUBJECTS.rebalance_completed],
    "ledger": [],
    # Due runs, and runs it fails itself when their lease expires.
    "scheduler": [SUBJECTS.rebalance_due, SUBJECTS.rebalance_completed],
}


def _build(service: str) -> FastStream:
    from services.common.settings import ServiceSettings

    # Explicit values win over the environment, so NATS_URL & co. cannot change the document.
    fixed = ServiceSettings(nats_url=NATS_URL, bus_namespace=SUBJECTS.namespace, stream_name="REBALANCER")
    if service == "executor":
        from services.executor.app import ExecutorSettings
        from services.executor.app import build as build_executor

        runtime, app = build_executor(ExecutorSettings(**fixed.model_dump()))
    elif service == "scheduler":
        from services.scheduler.app import build as build_scheduler
        from services.scheduler.settings import SchedulerSettings

        app, scheduler = build_scheduler(SchedulerSettings(**fixed.model_dump()))
        runtime = scheduler.runtime
    else:
        module = importlib.import_module(f"services.{service}.app")
        runtime, app = module.build(fixed)
    for subject in PUBLISHES[service]:
        model = EVENT_MODELS[subject]
        # Documentation only: this app is never started, and the service itself publishes through
        # its Bus (with Nats-Msg-Id) rather than through this publisher.
        runtime.bus.broker.publisher(
            subject, schema=model, title=f"{service}:{subject}", description=(model.__doc__ or "").strip() or None
        )
    return app


def pricer() -> FastStream:
    return _build("pricer")


def planner() -> FastStream:
    return _build("planner")


def executor() -> FastStream:
    return _build("executor")


def ledger() -> FastStream:
    return _build("ledger")


def scheduler() -> FastStream:
    return _build("scheduler")


FACTORIES: dict[str, Callable[[], FastStream]] = {
    "pricer": pricer,
    "planner": planner,
    "executor": executor,
    "ledger": ledger,
    "scheduler": scheduler,
}


def document(service: str) -> dict[str, Any]:
    """The service's AsyncAPI document, with the payload of every consumed stream subject."""
    doc: dict[str, Any] = FACTORIES[service]().schema.to_specification().to_jsonable()  # type: ignore[union-attr]
    return with_consumed_payloads(doc, CONSUMES[service])


def with_consumed_payloads(doc: dict[str, Any], consumes: dict[str, list[type[BaseModel]]]) -> dict[str, Any]:
    """Point each consumed stream channel's message at its models' schemas."""
    components = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    messages: dict[str, Any] = components.get("messages", {})
    all_models = sorted({m for models in consumes.values() for m in models}, key=lambda m: m.__name__)
    _, top = models_json_schema(
        [(m, "validation") for m in all_models], ref_template="#/components/schemas/{model}"
    )
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    found = set()
    channels: dict[str, Any] = doc.get("channels", {})
    for operation in doc.get("operations", {}).values():
        if operation["action"] != "receive":
            continue
        channel = channels[unquote(operation["channel"]["$ref"].rsplit("/", 1)[1])]
        address = channel["address"]
        if address.startswith("rpc."):
            continue  # request-reply, typed by the handler itself
        if address not in consumes:
            raise ValueError(f"{address}: consumed by the service but not listed in CONSUMES")
        found.add(address)
        refs = [{"$ref": f"#/components/schemas/{m.__name__}"} for m in consumes[address]]
        for ref in channel["messages"].values():
            message = messages[unquote(ref["$ref"].rsplit("/", 1)[1])]
            # A batch consumer's payload is empty to FastStream, a listener's the raw bytes it takes.
            replaced = message["payload"].get("$ref", "").rsplit("/", 1)[-1]
            message["payload"] = refs[0] if len(refs) == 1 else {"oneOf": refs}
            if replaced != "EmptyPayload" and f'"#/components/schemas/{replaced}"' not in json.dumps(doc):
                schemas.pop(replaced, None)
    missing = set(consumes) - found
    if missing:
        raise ValueError(f"CONSUMES lists {sorted(missing)} but the service has no such subscriber")
    if "EmptyPayload" in schemas and '"#/components/schemas/EmptyPayload"' not in json.dumps(doc):
        del schemas["EmptyPayload"]
    return doc
