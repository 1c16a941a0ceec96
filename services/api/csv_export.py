"""Trades as CSV for tax reporting (pure): one row per trade, oldest first, exact decimals."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

CSV_COLUMNS: tuple[str, ...] = (
    "date", "asset", "side", "quantity", "price", "value", "fee", "fee_currency",
    "exchange", "exchange_order_id", "run_id",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    # A cell starting with one of these runs as a formula in spreadsheets (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def trades_csv(trades: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in trades:
        writer.writerow(
            [
                _cell(t["executed_at"]), _cell(t["asset"]), _cell(t["side"]), _cell(t["quantity"]),
                # A fee the exchange never reported is left blank, never written as 0.
                _cell(t["price"]), _cell(t["value"]),
                _cell(t["fee"] if t.get("fee_known", True) else None), _cell(t["fee_currency"]),
                _cell(t["exchange_id"]), _cell(t["exchange_order_id"]), _cell(t["run_id"]),
            ]
        )
    return out.getvalue()
