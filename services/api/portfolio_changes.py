"""What a create or update does to a portfolio's columns (pure).

Field-level checks already ran in the request model; this merges the change into the current
values and applies the rules that span fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.api import validation

# Column defaults of a new portfolio (mirrors 001_core.sql). New portfolios start disabled:
# nothing trades until the user turns rebalancing on.
DEFAULTS: dict[str, Any] = {
    "quote_currency": "USD",
    "rebalance_enabled": False,
    "rebalance_interval": "weekly",
    "cron": None,
    "timezone": "UTC",
    "rebalance_threshold": Decimal("10"),
    "threshold_kind": "absolute",
    "rebalance_mode": "target",
    "always_rebalance": False,
    "max_orders_per_rebalance": None,
    "dry_run": False,
    "leave_alone": [],
    "cash_reserve": Decimal("0"),
    "order_type": "market",
    "limit_timeout_seconds": 60,
}
COLUMNS: tuple[str, ...] = ("name", "target_weights", "connection_id", *DEFAULTS)
SCHEDULE_COLUMNS = frozenset({"rebalance_interval", "cron", "timezone", "rebalance_enabled"})

# Request field name (camelCase) per column, to name the field in a 422.
FIELD_NAMES: dict[str, str] = {
    "name": "name",
    "target_weights": "targetWeights",
    "connection_id": "connectionId",
    "quote_currency": "quoteCurrency",
    "rebalance_enabled": "rebalanceEnabled",
    "rebalance_interval": "rebalanceInterval",
    "cron": "cron",
    "timezone": "timezone",
    "rebalance_threshold": "rebalanceThreshold",
    "threshold_kind": "thresholdKind",
    "rebalance_mode": "rebalanceMode",
    "always_rebalance": "alwaysRebalance",
    "max_orders_per_rebalance": "maxOrdersPerRebalance",
    "dry_run": "dryRun",
    "leave_alone": "leaveAlone",
    "cash_reserve": "cashReserve",
    "order_type": "orderType",
    "limit_timeout_seconds": "limitTimeoutSeconds",
}


@dataclass(frozen=True)
class Change:
    values: dict[str, Any]  # the full set of columns after the change
    changed: frozenset[str]  # columns whose value differs from before
    problems: list[tuple[str, str]]  # (request field, message)

    @property
    def schedule_changed(self) -> bool:
        return bool(self.changed & SCHEDULE_COLUMNS)


def apply_changes(current: Mapping[str, Any], changes: Mapping[str, Any]) -> Change:
    """``current``: the portfolio's columns (``DEFAULTS`` for a new one); ``changes``: the fields
    the request set, by column name, already cleaned field by field."""
    values = {column: current.get(column) for column in COLUMNS}
    for column, value in changes.items():
        if column in values and value is not None:
            values[column] = value

    if "rebalance_interval" in changes and changes["rebalance_interval"] is not None:
        interval, cron = validation.interval(str(changes["rebalance_interval"]))
        values["rebalance_interval"] = interval
        if cron is not None:
            values["cron"] = cron
        elif interval != "cron":
            values["cron"] = None

    problems: list[tuple[str, str]] = []
    try:
        validation.threshold(Decimal(str(values["rebalance_threshold"])), str(values["threshold_kind"]))
    except ValueError as exc:
        problems.append(("rebalanceThreshold", str(exc)))
    problems += validation.schedule_problems(
        interval_name=str(values["rebalance_interval"]),
        cron=values["cron"],
        target_assets=(values.get("target_weights") or {}).keys(),
        leave_alone=values["leave_alone"] or [],
        quote_currency=str(values["quote_currency"]),
    )
    changed = frozenset(c for c in COLUMNS if _differs(current.get(c), values[c]))
    return Change(values=values, changed=changed, problems=problems)


def _differs(before: Any, after: Any) -> bool:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return {k: Decimal(str(v)) for k, v in before.items()} != {
            k: Decimal(str(v)) for k, v in after.items()
        }
    if isinstance(before, Decimal) or isinstance(after, Decimal):
        try:
            return Decimal(str(before)) != Decimal(str(after))
        except ArithmeticError:
            return True
    return bool(before != after)
