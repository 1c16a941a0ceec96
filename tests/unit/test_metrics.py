"""The metrics helpers and the ops server (/metrics, /healthz, /readyz)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from services.common import metrics
from services.common.health import nats_prometheus_middleware, start_ops_server


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_observe_run_counts_run_duration_value_and_fees() -> None:
    quote = unique("Q")
    runs_before = sample("rebalancer_runs_total", result="succeeded", trigger="manual")
    count_before = sample("rebalancer_run_duration_seconds_count", result="succeeded")

    metrics.observe_run("succeeded", "manual", 3.5, Decimal("1234.50"), Decimal("1.25"), quote)
    metrics.observe_run("succeeded", "manual", 0.2, Decimal("100"), Decimal("0.10"), quote)

    assert sample("rebalancer_runs_total", result="succeeded", trigger="manual") == runs_before + 2
    assert sample("rebalancer_run_duration_seconds_count", result="succeeded") == count_before + 2
    assert sample("rebalancer_value_traded_total", quote=quote) == pytest.approx(1334.5)
    assert sample("rebalancer_fees_total", quote=quote) == pytest.approx(1.35)


def test_a_skipped_run_without_trades_adds_no_value_series() -> None:
    quote = unique("Q")
    metrics.observe_run("skipped", "scheduler", 0.05, Decimal("0"), Decimal("0"), quote)
    assert REGISTRY.get_sample_value("rebalancer_value_traded_total", {"quote": quote}) is None
    assert REGISTRY.get_sample_value("rebalancer_fees_total", {"quote": quote}) is None


def test_unknown_label_values_fold_into_other() -> None:
    before = sample("rebalancer_runs_total", result="other", trigger="other")
    metrics.observe_run("exploded", "cosmic-ray", 1.0, Decimal("0"), Decimal("0"), "USD")
    assert sample("rebalancer_runs_total", result="other", trigger="other") == before + 1
    assert (
        REGISTRY.get_sample_value("rebalancer_runs_total", {"result": "exploded", "trigger": "cosmic-ray"})
        is None
    )

    orders_before = sample("rebalancer_orders_total", side="sell", status="other")
    metrics.observe_order("sell", "weird-status")
    assert sample("rebalancer_orders_total", side="sell", status="other") == orders_before + 1


def test_portfolio_valuation_replaces_assets_that_left_the_portfolio() -> None:
    pid = unique("p")
    valued_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    metrics.record_portfolio_valuation(
        pid, "USD", Decimal("10000"), {"BTC": Decimal("2.5"), "ETH": Decimal("-2.5")}, valued_at
    )
    assert sample("rebalancer_portfolio_value", portfolio_id=pid, quote="USD") == 10000
    assert sample("rebalancer_asset_drift_pp", portfolio_id=pid, asset="ETH") == -2.5
    assert sample("rebalancer_portfolio_valued_timestamp_seconds", portfolio_id=pid) == valued_at.timestamp()

    metrics.record_portfolio_valuation(pid, "USD", Decimal("9000"), {"BTC": Decimal("1")}, valued_at)
    assert sample("rebalancer_asset_drift_pp", portfolio_id=pid, asset="BTC") == 1
    assert (
        REGISTRY.get_sample_value("rebalancer_asset_drift_pp", {"portfolio_id": pid, "asset": "ETH"}) is None
    )

    metrics.forget_portfolio(pid)
    for name, labels in (
        ("rebalancer_portfolio_value", {"portfolio_id": pid, "quote": "USD"}),
        ("rebalancer_asset_drift_pp", {"portfolio_id": pid, "asset": "BTC"}),
        ("rebalancer_portfolio_valued_timestamp_seconds", {"portfolio_id": pid}),
    ):
        assert REGISTRY.get_sample_value(name, labels) is None


async def test_exchange_call_timer_counts_errors_by_class_and_reraises() -> None:
    exchange = unique("ex")

    async def failing_call() -> None:
        with metrics.time_exchange_call(exchange, "create_order"):
            await asyncio.sleep(0)
            raise TimeoutError("lost response")

    with metrics.time_exchange_call(exchange, "fetch_balance"):
        pass
    with pytest.raises(TimeoutError):
        await failing_call()

    assert sample("rebalancer_exchange_call_seconds_count", exchange=exchange, call="fetch_balance") == 1
    assert sample("rebalancer_exchange_call_seconds_count", exchange=exchange, call="create_order") == 1
    assert (
        sample(
            "rebalancer_exchange_errors_total",
            exchange=exchange,
            call="create_order",
            error_class="TimeoutError",
        )
        == 1
    )
    assert (
        REGISTRY.get_sample_value(
            "rebalancer_exchange_errors_total",
            {"exchange": exchange, "call": "fetch_balance", "error_class": "TimeoutError"},
        )
        is None
    )


def test_dead_letter_counts_both_the_letter_and_the_message_outcome() -> None:
    consumer = unique("c")
    metrics.record_dead_letter(consumer, "ValidationError")
    assert sample("rebalancer_dead_letters_total", consumer=consumer, reason="ValidationError") == 1
    assert sample("rebalancer_messages_processed_total", consumer=consumer, outcome="dead_lettered") == 1


def test_state_gauges_and_outbox_lag_is_zero_when_nothing_pending() -> None:
    metrics.set_schedule_state(due_backlog=7, active_runs=3, oldest_active_run_age_seconds=42.0, waiting_for_account=2)
    assert sample("rebalancer_due_backlog") == 7
    assert sample("rebalancer_due_waiting_for_account") == 2
    assert sample("rebalancer_active_runs") == 3
    assert sample("rebalancer_oldest_active_run_age_seconds") == 42.0
    metrics.set_outbox_state(pending=2, oldest_age_seconds=5.5)
    assert sample("rebalancer_outbox_lag_seconds") == 5.5
    metrics.set_outbox_state(pending=0, oldest_age_seconds=99.0)
    assert sample("rebalancer_outbox_pending") == 0
    assert sample("rebalancer_outbox_lag_seconds") == 0


def test_exposed_names_include_series_of_metrics_never_used() -> None:
    names = metrics.exposed_names()
    for expected in (
        "rebalancer_runs_total",
        "rebalancer_run_duration_seconds_bucket",
        "rebalancer_exchange_call_seconds_sum",
        "rebalancer_build_info",
        "rebalancer_outbox_lag_seconds",
    ):
        assert expected in names
    assert "rebalancer_runs_bucket" not in names
    assert "rebalancer_runs" not in names


def test_faststream_middleware_registers_its_metrics_on_the_given_registry() -> None:
    registry = CollectorRegistry()
    nats_prometheus_middleware("pricer", registry=registry)
    nats_prometheus_middleware("planner", registry=registry)  # a second one reuses the metrics
    names = metrics.exposed_names(registry)
    assert "faststream_received_processed_messages_total" in names
    assert "faststream_received_processed_messages_duration_seconds_bucket" in names


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_ops_server_serves_metrics_liveness_and_flipping_readiness() -> None:
    state = {"ready": False, "fail": False}

    async def ready() -> bool:
        if state["fail"]:
            raise ConnectionError("database gone")
        return state["ready"]

    metrics.observe_order("buy", "filled")
    async with (
        start_ops_server(0, "pricer", ready, host="127.0.0.1") as server,
        aiohttp.ClientSession() as session,
    ):
        assert server.port > 0
        status, content_type, body = await get(session, f"{server.url}/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert 'rebalancer_orders_total{side="buy",status="filled"}' in body
        assert 'rebalancer_build_info{service="pricer"' in body

        status, _, body = await get(session, f"{server.url}/healthz")
        assert (status, '"alive"' in body) == (200, True)

        status, content_type, body = await get(session, f"{server.url}/readyz")
        assert status == 503
        assert content_type.startswith("application/json")
        assert "dependencies not ready" in body

        state["ready"] = True
        status, _, body = await get(session, f"{server.url}/readyz")
        assert (status, '"ready"' in body) == (200, True)

        state["fail"] = True
        status, _, body = await get(session, f"{server.url}/readyz")
        assert status == 503
        assert "ConnectionError" in body
        assert "database gone" not in body  # reasons stay short and leak no detail

        status, _, _ = await get(session, f"{server.url}/nope")
        assert status == 404
    # The port is released on exit.
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()


async def test_readiness_check_that_hangs_counts_as_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common import health

    monkeypatch.setattr(health, "READY_TIMEOUT_SECONDS", 0.05)

    async def hangs() -> bool:
        await asyncio.sleep(3600)
        return True

    async with (
        start_ops_server(0, "executor", hangs, host="127.0.0.1") as server,
        aiohttp.ClientSession() as session,
    ):
        status, _, body = await get(session, f"{server.url}/readyz")
    assert status == 503
    assert "timed out" in body


async def test_ops_server_without_a_check_is_ready() -> None:
    async with (
        start_ops_server(0, "ledger", None, host="127.0.0.1") as server,
        aiohttp.ClientSession() as session,
    ):
        status, _, _ = await get(session, f"{server.url}/readyz")
    assert status == 200


def test_exposed_names_are_exactly_what_the_text_format_shows() -> None:
    registry = CollectorRegistry()
    Counter("demo_events", "d", ["kind"], registry=registry)  # labelled, never used: no sample yet
    Gauge("demo_level", "d", registry=registry)
    names = metrics.exposed_names(registry)
    assert {"demo_events_total", "demo_level"} <= names
    assert "demo_events" not in names  # the counter's family name is never a series


def test_per_portfolio_series_are_kept_for_the_most_recently_valued_portfolios_only() -> None:
    valued_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    pids = [unique("cap") for _ in range(4)]
    try:
        metrics.limit_portfolio_series(3)
        for pid in pids[:3]:
            metrics.record_portfolio_valuation(pid, "USD", Decimal("1"), {"BTC": Decimal("1")}, valued_at)
        metrics.record_portfolio_valuation(pids[0], "EUR", Decimal("2"), {"ETH": Decimal("2")}, valued_at)  # again
        metrics.record_portfolio_valuation(pids[3], "USD", Decimal("3"), {"BTC": Decimal("3")}, valued_at)

        def kept(pid: str) -> bool:
            return REGISTRY.get_sample_value("rebalancer_portfolio_valued_timestamp_seconds", {"portfolio_id": pid}) \
                is not None

        assert [kept(pid) for pid in pids] == [True, False, True, True]  # pids[1] was the least recent
        assert REGISTRY.get_sample_value("rebalancer_asset_drift_pp", {"portfolio_id": pids[1], "asset": "BTC"}) is None
        # A new quote replaces the value series; the drift follows the assets now reported.
        assert sample("rebalancer_portfolio_value", portfolio_id=pids[0], quote="EUR") == 2
        old_quote = {"portfolio_id": pids[0], "quote": "USD"}
        assert REGISTRY.get_sample_value("rebalancer_portfolio_value", old_quote) is None
        assert REGISTRY.get_sample_value("rebalancer_asset_drift_pp", {"portfolio_id": pids[0], "asset": "BTC"}) is None

        metrics.limit_portfolio_series(0)  # off: everything goes, nothing new is kept
        metrics.record_portfolio_valuation(unique("off"), "USD", Decimal("1"), {}, valued_at)
        assert not any(kept(pid) for pid in pids)
    finally:
        metrics.limit_portfolio_series(1000)
