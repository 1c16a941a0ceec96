"""A batch of order outcomes becomes exactly the history rows its legs' own events would."""

from __future__ import annotations

from contracts.v1 import OrderFailed, OrdersReported, RebalanceCompleted, ReportedOrder, RunError
from services.ledger.records import Rows
from tests.unit.contracts.samples import samples


def test_an_orders_report_writes_the_rows_its_legs_events_would_write_one_by_one() -> None:
    batch = samples()["OrdersReported"]
    assert isinstance(batch, OrdersReported)
    failed = batch.orders[1].model_copy(update={"outcome": "failed", "leg": 2, "client_order_id": "c-2",
                                                "event_id": "e-2"})
    submitted = batch.orders[0].model_copy(update={"outcome": "submitted", "leg": 3, "client_order_id": "c-3",
                                                   "event_id": "e-3"})
    batch = batch.model_copy(update={"orders": [*batch.orders, failed, submitted]})
    assert all(isinstance(o, ReportedOrder) for o in batch.orders)

    together, one_by_one = Rows(), Rows()
    together.add(batch)
    events = batch.order_events()
    for event in events:
        one_by_one.add(event)

    assert any(isinstance(e, OrderFailed) for e in events)
    assert together == one_by_one
    assert len(together.orders) == 4 and len(together.trades) == 1
    statuses = [row[10] for row in together.orders]
    assert statuses == ["filled", "rejected", "failed", "submitted"]
    # The rejection and the failure are logged; the fill is not (the activity feed reads it from its trade).
    assert [(row[0], row[4]) for row in together.activity] == [
        (batch.orders[1].event_id, "order_rejected"), ("e-2", "order_failed")
    ]


def test_only_runs_with_legs_of_unknown_outcome_have_their_figures_settled() -> None:
    # The settling statement is for the rare run that stopped with a leg of unknown outcome; the
    # rows of every other run never ask for it.
    report, done = samples()["OrdersReported"], samples()["RebalanceCompleted"]
    assert isinstance(report, OrdersReported) and isinstance(done, RebalanceCompleted)
    unknown = RunError(stage="executor", code="outcome_unknown", message="may be on the exchange", leg=1)
    usual = Rows()
    usual.add(report)
    usual.add(done)
    assert usual.unknown_legs == []

    stopped = Rows()
    stopped.add(report.model_copy(update={"reconciled": True}))
    stopped.add(done.model_copy(update={"errors": [*done.errors, unknown]}))
    assert stopped.unknown_legs == [report.run_id, done.run_id]


def test_an_abandoned_leg_is_recorded_as_abandoned_and_logged_so() -> None:
    report = samples()["OrdersReported"]
    assert isinstance(report, OrdersReported)
    given_up = RunError(stage="executor", code="abandoned", message="outcome unknown: abandoned by its owner", leg=1)
    failed = RunError(stage="executor", code="not_placed", message="not placed", leg=1)
    leg = report.orders[0].model_copy(update={"outcome": "failed", "error": given_up})
    rows = Rows()
    rows.add(report.model_copy(update={"orders": [leg], "reconciled": True}))
    rows.add(report.model_copy(update={"orders": [leg.model_copy(update={"error": failed})], "run_id": "r-2"}))
    assert [row[10] for row in rows.orders] == ["abandoned", "failed"]
    assert rows.trades == []
    assert [row[4] for row in rows.activity] == ["order_abandoned", "order_failed"]
    assert rows.unknown_legs == [report.run_id]
