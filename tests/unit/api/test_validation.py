"""Pure rules: weights, symbols, thresholds, intervals, the portfolio change merge, CSV, tables."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api import validation
from services.api.cli_format import parse_weights, table
from services.api.csv_export import CSV_COLUMNS, trades_csv
from services.api.portfolio_changes import DEFAULTS, apply_changes
from services.api.repositories.history import Filters, where_clause


def test_weights_are_normalized_to_exactly_100() -> None:
    weights = validation.target_weights({"btc": "33.33", "eth": 33.33, "USDC": "33.33"})
    assert set(weights) == {"BTC", "ETH", "USDC"}
    assert sum(weights.values()) == Decimal(100)


@given(st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=20))
def test_normalize_always_sums_to_100(raw: list[int]) -> None:
    weights = {f"A{i}": Decimal(v) for i, v in enumerate(raw)}
    normalized = validation.normalize_weights(weights)
    assert sum(normalized.values()) == Decimal(100)
    assert all(w > 0 for w in normalized.values())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"BTC": 50, "ETH": 40}, "sum to 100"),
        ({"BTC": 100, "btc": 0}, "more than once"),
        ({"BTC": 101, "ETH": -1}, "positive"),
        ({"BTC": "NaN"}, "finite"),
        ({"BTC": True}, "number"),
        ({"B/TC": 100}, "not a valid asset symbol"),
        ({}, "at least one"),
    ],
)
def test_bad_weights(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validation.target_weights(raw)


def test_tolerance_boundary() -> None:
    assert validation.target_weights({"BTC": "50.05", "ETH": "50.05"})
    with pytest.raises(ValueError):
        validation.target_weights({"BTC": "50.06", "ETH": "50.05"})


def test_intervals_and_cron() -> None:
    assert validation.interval("Weekly") == ("weekly", None)
    assert validation.interval("cron") == ("cron", None)
    assert validation.interval("0 9 * * 1") == ("cron", "0 9 * * 1")
    for bad in ("fortnightly", "61 * * * *", "* * *"):
        with pytest.raises(ValueError):
            validation.interval(bad)
    assert validation.check_interval("300") == "300"
    with pytest.raises(ValueError):
        validation.check_interval("0")


@pytest.mark.parametrize(
    ("value", "kind", "ok"),
    [("10", "absolute", True), ("100", "relative", True), ("100.01", "absolute", False),
     ("0", "absolute", False), ("5000", "value", True), ("0", "value", False)],
)
def test_threshold_ranges(value: str, kind: str, ok: bool) -> None:
    if ok:
        assert validation.threshold(Decimal(value), kind) == Decimal(value)
    else:
        with pytest.raises(ValueError):
            validation.threshold(Decimal(value), kind)


def test_symbols_timezones_emails_urls() -> None:
    assert validation.symbol(" usdc ") == "USDC"
    assert validation.timezone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(ValueError):
        validation.timezone("Nowhere/City")
    assert validation.email("a@b.io") == "a@b.io"
    with pytest.raises(ValueError):
        validation.email("a@b")
    assert validation.api_url("https://testnet.example.com/") == "https://testnet.example.com"
    with pytest.raises(ValueError):
        validation.api_url("javascript:alert(1)")


def _current() -> dict[str, object]:
    return {**DEFAULTS, "name": "P", "target_weights": {"BTC": Decimal(100)}, "connection_id": "c"}


def test_change_merges_and_reports_cross_field_problems() -> None:
    change = apply_changes(_current(), {"rebalance_interval": "0 * * * *"})
    assert change.values["rebalance_interval"] == "cron" and change.values["cron"] == "0 * * * *"
    assert change.schedule_changed and not change.problems
    back = apply_changes(change.values, {"rebalance_interval": "daily"})
    assert back.values["cron"] is None
    assert apply_changes(_current(), {"rebalance_interval": "cron"}).problems == [
        ("cron", "a cron interval needs a cron expression")
    ]
    assert [f for f, _ in apply_changes(_current(), {"leave_alone": ["BTC", "USD"]}).problems] == [
        "leaveAlone", "leaveAlone"
    ]
    relative = apply_changes(_current(), {"threshold_kind": "absolute", "rebalance_threshold": Decimal(150)})
    assert [f for f, _ in relative.problems] == ["rebalanceThreshold"]
    same = apply_changes(_current(), {"target_weights": {"BTC": Decimal("100.0")}, "name": "P"})
    assert same.changed == frozenset()


def test_csv_columns_exact_decimals_and_no_formula_injection() -> None:
    trade = {
        "executed_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "asset": "BTC", "side": "buy",
        "quantity": Decimal("0.00000001"), "price": Decimal("50000.10"), "value": Decimal("0.0005000010"),
        "fee": Decimal("0"), "fee_currency": None, "exchange_id": "kraken", "exchange_order_id": "=HYPERLINK()",
        "run_id": "r1",
    }
    rows = list(csv.reader(io.StringIO(trades_csv([trade]))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1] == ["2026-01-02T03:04:05+00:00", "BTC", "buy", "0.00000001", "50000.10", "0.0005000010",
                       "0", "", "kraken", "'=HYPERLINK()", "r1"]


def test_where_clause_numbers_params_and_skips_unsupported_filters() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sql, params = where_clause(
        Filters(date_from=start, success=True, side="buy"), "executed_at", frozenset({"success"})
    )
    assert sql == " WHERE executed_at >= $1 AND success = $2"
    assert params == [start, True]
    assert where_clause(Filters(), "created_at", frozenset()) == ("", [])


def test_cli_tables_and_weights() -> None:
    text = table([{"id": "1", "ok": True, "w": {"BTC": "60"}}], [("id", "ID"), ("ok", "OK"), ("w", "W")])
    assert text.splitlines() == ["ID  OK   W", "--  ---  ------", "1   yes  BTC:60"]
    assert "(none)" in table([], [("id", "ID")])
    assert parse_weights("BTC=60, eth:40") == {"BTC": "60", "eth": "40"}
    with pytest.raises(ValueError):
        parse_weights("BTC")
