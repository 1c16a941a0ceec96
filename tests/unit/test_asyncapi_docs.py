"""The committed AsyncAPI documents (contracts/asyncapi/<service>.json) equal what the code
generates now, and say what each service consumes and publishes, with the message schemas.
On a difference: run scripts/asyncapi and review the diff."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest

from contracts.asyncapi.__main__ import path_of, render
from contracts.asyncapi._apps import FACTORIES, with_consumed_payloads
from contracts.v1 import PlanCreated, PortfolioValued, RebalanceDue

SERVICES = sorted(FACTORIES)
EVENTS = "rebalancer.v1.evt"
CONSUMED: dict[str, dict[str, list[str] | None]] = {
    "pricer": {
        f"{EVENTS}.rebalance.due": ["RebalanceDue"], "rpc.rebalancer.v1.portfolio.value": None,
        "bcast.rebalancer.v1.connection.changed": ["ConnectionChanged"],
    },
    "planner": {f"{EVENTS}.portfolio.valued": ["PortfolioValued"], "rpc.rebalancer.v1.plan.preview": None},
    "executor": {
        f"{EVENTS}.plan.created": ["PlanCreated"],
        "rebalancer.v1.cmd.orders.abandon": ["AbandonOrders"],
        "bcast.rebalancer.v1.connection.changed": ["ConnectionChanged"],
    },
    "ledger": {
        f"{EVENTS}.>": [
            "RebalanceDue", "PortfolioValued", "PlanCreated", "OrderSubmitted", "OrderFilled", "OrderRejected",
            "OrderFailed", "OrdersReported", "RebalanceCompleted",
        ]
    },
    "scheduler": {
        "rebalancer.v1.cmd.rebalance.request": ["RebalanceRequested"],
        f"{EVENTS}.rebalance.completed": ["RebalanceCompleted"],
        "rebalancer.v1.cmd.scheduler.control": ["SchedulerControl"],
    },
}
PUBLISHED = {
    "pricer": {f"{EVENTS}.portfolio.valued": "PortfolioValued", f"{EVENTS}.rebalance.completed": "RebalanceCompleted"},
    "planner": {f"{EVENTS}.plan.created": "PlanCreated"},
    "executor": {
        f"{EVENTS}.order.reported": "OrdersReported",
        f"{EVENTS}.rebalance.completed": "RebalanceCompleted",
    },
    "ledger": {},
    "scheduler": {f"{EVENTS}.rebalance.due": "RebalanceDue", f"{EVENTS}.rebalance.completed": "RebalanceCompleted"},
}


def committed(service: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path_of(service).read_text(encoding="utf-8"))
    return loaded


def operations(doc: dict[str, Any], action: str) -> dict[str, Any]:
    """address -> payload of each operation with this action."""
    out: dict[str, Any] = {}
    for operation in doc["operations"].values():
        if operation["action"] != action:
            continue
        channel = doc["channels"][unquote(operation["channel"]["$ref"].rsplit("/", 1)[1])]
        [ref] = channel["messages"].values()
        message = doc["components"]["messages"][unquote(ref["$ref"].rsplit("/", 1)[1])]
        out[channel["address"]] = message["payload"]
    return out


def schema_names(payload: dict[str, Any]) -> list[str]:
    refs = payload.get("oneOf", [payload])
    return [r["$ref"].rsplit("/", 1)[1] for r in refs]


@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_document_equals_the_generated_one(service: str) -> None:
    assert path_of(service).exists(), f"run scripts/asyncapi to create {path_of(service).name}"
    assert path_of(service).read_text(encoding="utf-8") == render(service), "run scripts/asyncapi"


def test_generation_is_stable() -> None:
    assert render("ledger") == render("ledger")


@pytest.mark.parametrize("service", SERVICES)
def test_the_document_lists_what_the_service_consumes_with_its_schemas(service: str) -> None:
    doc = committed(service)
    assert doc["info"]["title"] == f"rebalancer {service}" and doc["asyncapi"].startswith("3.")
    received = operations(doc, "receive")
    assert set(received) == set(CONSUMED[service])
    for address, models in CONSUMED[service].items():
        if models is not None:
            assert schema_names(received[address]) == models
            for name in models:
                assert doc["components"]["schemas"][name]["type"] == "object"
    assert "EmptyPayload" not in doc["components"]["schemas"]


@pytest.mark.parametrize("service", SERVICES)
def test_the_document_lists_what_the_service_publishes_with_its_schemas(service: str) -> None:
    doc = committed(service)
    sent = operations(doc, "send")
    assert {a: schema_names(p) for a, p in sent.items()} == {a: [m] for a, m in PUBLISHED[service].items()}


@pytest.mark.parametrize(("service", "model"), [("pricer", RebalanceDue), ("planner", PortfolioValued),
                                                ("executor", PlanCreated)])
def test_a_message_schema_names_every_field_of_the_model(service: str, model: type[Any]) -> None:
    schema = committed(service)["components"]["schemas"][model.__name__]
    assert set(schema["properties"]) == set(model.model_fields)
    assert set(schema["required"]) == {n for n, f in model.model_fields.items() if f.is_required()}
    assert schema["properties"]["schema_version"]["const"] == 1


def test_money_fields_are_documented_as_strings_or_numbers_never_only_numbers() -> None:
    holding = committed("planner")["components"]["schemas"]["Holding"]
    assert {"type": "string"} in holding["properties"]["free"]["anyOf"]


def _doc_with(address: str) -> dict[str, Any]:
    return {
        "channels": {"c": {"address": address, "messages": {"m": {"$ref": "#/components/messages/m"}}}},
        "operations": {"o": {"action": "receive", "channel": {"$ref": "#/channels/c"}}},
        "components": {"messages": {"m": {"payload": {"$ref": "#/components/schemas/EmptyPayload"}}},
                       "schemas": {"EmptyPayload": {"type": "null"}}},
    }


def test_a_consumer_missing_from_the_table_fails_the_generation() -> None:
    with pytest.raises(ValueError, match="not listed in CONSUMES"):
        with_consumed_payloads(_doc_with("rebalancer.v1.evt.new.thing"), {})


def test_a_table_entry_without_a_consumer_fails_the_generation() -> None:
    with pytest.raises(ValueError, match="no such subscriber"):
        with_consumed_payloads(_doc_with("a.b"), {"a.b": [RebalanceDue], "c.d": [PlanCreated]})


def test_a_consumed_payload_points_at_its_model() -> None:
    doc = with_consumed_payloads(_doc_with("a.b"), {"a.b": [RebalanceDue]})
    assert doc["components"]["messages"]["m"]["payload"] == {"$ref": "#/components/schemas/RebalanceDue"}
    assert "Strategy" in doc["components"]["schemas"] and "EmptyPayload" not in doc["components"]["schemas"]
