"""Properties every v1 message keeps on the wire: JSON round trips, Decimals as exact strings,
frozen models, unknown fields ignored, schema version 1 only, deterministic derived ids."""

from __future__ import annotations

import inspect
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

import contracts.v1 as v1
from contracts.envelope import SCHEMA_VERSION, Envelope, derived_id, new_id, uuid5_hex
from contracts.subjects import Subjects
from contracts.v1 import Holding, OrderFilled, OrderRejected, OrdersReported, PortfolioValued, RebalanceDue
from tests.unit.contracts.samples import STARTED_AT, STRATEGY, samples

SAMPLES = samples()


def concrete_message_types() -> set[str]:
    """Envelope subclasses exported by contracts.v1 that nothing else extends: what travels."""
    classes = [c for c in vars(v1).values() if inspect.isclass(c) and issubclass(c, Envelope)]
    return {c.__name__ for c in classes if not any(o is not c and issubclass(o, c) for o in classes)}


def floats_in(value: Any, path: str = "$") -> list[str]:
    if isinstance(value, float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in floats_in(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in floats_in(v, f"{path}[{i}]")]
    return []


def test_there_is_a_sample_of_every_message_type() -> None:
    assert set(SAMPLES) == concrete_message_types()
    assert len(SAMPLES) == 13


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_message_round_trips_through_json_unchanged(name: str) -> None:
    message = SAMPLES[name]
    again = type(message).model_validate_json(message.model_dump_json())
    assert again == message
    assert again.model_dump_json() == message.model_dump_json()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_no_number_on_the_wire_is_a_float(name: str) -> None:
    assert floats_in(json.loads(SAMPLES[name].model_dump_json())) == []


def test_decimals_travel_as_strings_that_keep_their_digits() -> None:
    valued = SAMPLES["PortfolioValued"]
    assert isinstance(valued, PortfolioValued)
    wire = json.loads(valued.model_dump_json())
    assert wire["holdings"][0]["free"] == "0.10000000"
    assert wire["total_value"] == "8101.50160000"
    assert wire["prices"]["BTC"] == "65000.10"
    assert wire["markets"][0]["amount_step"] == "0.00000001"  # not 1e-08
    back = PortfolioValued.model_validate_json(valued.model_dump_json())
    assert str(back.holdings[0].free) == "0.10000000"
    assert isinstance(back.total_value, Decimal)


def test_a_large_or_tiny_decimal_is_written_without_an_exponent() -> None:
    holding = Holding(asset="SHIB", free=Decimal("1E+12"), total=Decimal("1E-12"))
    assert json.loads(holding.model_dump_json()) == {
        "asset": "SHIB",
        "free": "1000000000000",
        "total": "0.000000000001",
    }


def test_a_decimal_sent_as_a_json_number_is_still_read_exactly() -> None:
    """An older or foreign producer may send numbers; the model keeps them as Decimal."""
    holding = Holding.model_validate_json('{"asset": "BTC", "free": 0.1, "total": "0.10"}')
    assert holding.free == Decimal("0.1") and isinstance(holding.free, Decimal)


def test_the_python_dump_keeps_decimals_as_decimals() -> None:
    dumped = SAMPLES["PortfolioValued"].model_dump()
    assert isinstance(dumped["total_value"], Decimal)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_messages_are_frozen(name: str) -> None:
    message = SAMPLES[name]
    with pytest.raises(ValidationError, match="frozen"):
        message.message_id = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        message.correlation_id = "changed"  # type: ignore[misc]


def test_nested_value_objects_are_frozen_too() -> None:
    due = SAMPLES["RebalanceDue"]
    assert isinstance(due, RebalanceDue)
    with pytest.raises(ValidationError, match="frozen"):
        due.strategy.threshold = Decimal("1")  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_unknown_fields_are_ignored(name: str) -> None:
    message = SAMPLES[name]
    wire = json.loads(message.model_dump_json())
    wire["added_in_a_later_minor_version"] = {"x": 1}
    if "strategy" in wire:
        wire["strategy"]["new_strategy_field"] = "y"
    read = type(message).model_validate_json(json.dumps(wire))
    assert read == message
    assert "added_in_a_later_minor_version" not in read.model_dump()


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("version", [0, 2, "2", None])
def test_a_schema_version_other_than_1_is_rejected(name: str, version: object) -> None:
    message = SAMPLES[name]
    wire = json.loads(message.model_dump_json())
    assert wire["schema_version"] == SCHEMA_VERSION == 1
    wire["schema_version"] = version
    with pytest.raises(ValidationError, match="schema_version"):
        type(message).model_validate_json(json.dumps(wire))


def test_a_missing_schema_version_means_version_1() -> None:
    wire = json.loads(SAMPLES["RebalanceRequested"].model_dump_json())
    del wire["schema_version"]
    assert type(SAMPLES["RebalanceRequested"]).model_validate_json(json.dumps(wire)).schema_version == 1


def test_a_missing_required_field_is_rejected() -> None:
    wire = json.loads(SAMPLES["RebalanceDue"].model_dump_json())
    del wire["run_id"]
    with pytest.raises(ValidationError, match="run_id"):
        RebalanceDue.model_validate_json(json.dumps(wire))


def test_a_value_outside_a_literal_is_rejected() -> None:
    wire = json.loads(SAMPLES["PlanCreated"].model_dump_json())
    wire["decision"] = "maybe"
    with pytest.raises(ValidationError, match="decision"):
        type(SAMPLES["PlanCreated"]).model_validate_json(json.dumps(wire))


def test_derived_id_is_deterministic() -> None:
    run = "0b6f0c1e-1f2a-4c3d-8e4f-5a6b7c8d9e0f"
    assert derived_id(run, "plan") == derived_id(run, "plan")
    # Pinned: every service and every release must derive the same id for the same fact
    # (a changed namespace or join would make redelivered outputs look new downstream).
    assert derived_id("run-1", "order", 0, "filled") == "c4e66abb-a220-5895-b2dc-8191b01ee7d5"


def test_derived_id_differs_per_part() -> None:
    run = "0b6f0c1e-1f2a-4c3d-8e4f-5a6b7c8d9e0f"
    ids = {
        derived_id(run, "valued"),
        derived_id(run, "plan"),
        derived_id(run, "completed"),
        derived_id(run, "order", 0, "filled"),
        derived_id(run, "order", 1, "filled"),
        derived_id(run, "order", 0, "rejected"),
        derived_id("another-run", "plan"),
    }
    assert len(ids) == 7


def test_derived_id_is_a_name_based_uuid_and_new_id_a_random_one() -> None:
    import uuid

    assert uuid.UUID(derived_id("x")).version == 5
    assert uuid.UUID(new_id()).version == 4
    assert new_id() != new_id()


def test_default_envelope_fields_are_filled_in() -> None:
    def fresh() -> RebalanceDue:
        return RebalanceDue(
            correlation_id="r",
            run_id="r",
            portfolio_id="p",
            user_id="u",
            triggered_by="manual",
            started_at=STARTED_AT,
            strategy=STRATEGY,
            due_at=STARTED_AT,
        )

    a, b = fresh(), fresh()
    assert a.schema_version == 1 and a.causation_id is None
    assert a.occurred_at.tzinfo is not None
    assert a.message_id != b.message_id  # a new fact without a derived id gets a new id


def test_caused_links_the_next_message_to_this_one() -> None:
    due = SAMPLES["RebalanceDue"]
    assert due.caused() == {"correlation_id": due.correlation_id, "causation_id": due.message_id}


def test_subjects_follow_the_naming_rule_and_are_unique() -> None:
    subjects = Subjects("rebalancer")
    names = [
        subjects.rebalance_request,
        subjects.scheduler_control,
        subjects.orders_abandon,
        subjects.rebalance_due,
        subjects.portfolio_valued,
        subjects.plan_created,
        subjects.order_submitted,
        subjects.order_filled,
        subjects.order_rejected,
        subjects.order_failed,
        subjects.rebalance_completed,
    ]
    assert len(set(names)) == len(names)
    for name in names:
        namespace, version, kind, _entity, _fact = name.split(".")
        assert (namespace, version) == ("rebalancer", "v1") and kind in ("evt", "cmd")
    assert subjects.rebalance_due == "rebalancer.v1.evt.rebalance.due"
    assert subjects.stream_subjects == ["rebalancer.>"]


def test_every_event_falls_under_the_all_events_wildcard_and_rpc_stays_outside_the_stream() -> None:
    subjects = Subjects("t1")
    events = [subjects.rebalance_due, subjects.portfolio_valued, subjects.plan_created,
              subjects.order_filled, subjects.rebalance_completed]
    assert all(e.startswith(subjects.all_events.removesuffix(">")) for e in events)
    orders = [subjects.order_submitted, subjects.order_filled, subjects.order_rejected, subjects.order_failed]
    assert all(o.rsplit(".", 1)[0] == subjects.order_events.removesuffix(".*") for o in orders)
    # Request-reply subjects must not be captured by the stream (it would answer with a PubAck).
    for rpc in (subjects.rpc_value_portfolio, subjects.rpc_preview_plan):
        assert not rpc.startswith(subjects.stream_subjects[0].removesuffix(">"))


def test_namespaces_do_not_share_subjects() -> None:
    assert Subjects("a").plan_created != Subjects("b").plan_created


def test_a_batch_of_order_outcomes_unpacks_into_the_events_each_leg_would_have_sent() -> None:
    batch = SAMPLES["OrdersReported"]
    assert isinstance(batch, OrdersReported)
    filled, rejected = batch.order_events()
    assert type(filled) is OrderFilled and type(rejected) is OrderRejected
    for event, reported in zip((filled, rejected), batch.orders, strict=True):
        assert event.message_id == reported.event_id  # history rows keep the per-leg ids
        assert (event.run_id, event.correlation_id, event.causation_id) == (
            batch.run_id, batch.correlation_id, batch.causation_id
        )
        assert (event.leg, event.client_order_id, event.fill, event.error) == (
            reported.leg, reported.client_order_id, reported.fill, reported.error
        )
    assert filled.side == "sell" and rejected.order_type == "limit"


def test_derived_ids_are_the_standard_uuid5_of_their_parts() -> None:
    # Computed without uuid.UUID objects for speed: they must stay exactly uuid5, or every id
    # (and every client order id already sent to an exchange) would change.
    namespace = uuid.UUID("6f1c8a52-0b7e-4f55-9b8e-1d5c8e1e2a90")
    for name in ("r/completed", "", "ü-ñ/42", "x" * 300):
        assert uuid5_hex(namespace, name, dashed=True) == str(uuid.uuid5(namespace, name))
        assert uuid5_hex(namespace, name, dashed=False) == uuid.uuid5(namespace, name).hex
    assert derived_id("run", "order", 3, "filled") == str(uuid.uuid5(namespace, "run/order/3/filled"))
