"""The seed's scheduler log lines, as pure functions (tests pin the wording)."""

from __future__ import annotations

from decimal import Decimal

from contracts.v1.messages import RebalanceCompleted

_DOLLAR_QUOTES = frozenset({"USD", "USDT", "USDC", "BUSD", "DAI"})


def money(amount: Decimal, quote: str) -> str:
    figure = f"{amount.quantize(Decimal('0.01')):,}"
    return f"${figure}" if quote.upper() in _DOLLAR_QUOTES else f"{figure} {quote}"


def duration_ms(event: RebalanceCompleted) -> int:
    return max(int((event.completed_at - event.started_at).total_seconds() * 1000), 0)


def completion_line(event: RebalanceCompleted, name: str, quote: str) -> str:
    label = f"{name}" if name else event.portfolio_id
    ms = duration_ms(event)
    if event.status == "succeeded":
        return (
            f"[Scheduler] ✓ Portfolio rebalanced successfully: {label} ({event.orders_executed} orders, "
            f"{money(event.total_value_traded, quote)} traded, {ms}ms)"
        )
    if event.status == "skipped":
        reason = event.reason or "no rebalance needed"
        return f"[Scheduler] ✓ Portfolio rebalance skipped: {label} ({reason}, {ms}ms)"
    if event.status == "partial":
        return (
            f"[Scheduler] ✗ Portfolio partially rebalanced: {label} ({event.orders_executed} of "
            f"{event.orders_planned} orders, {money(event.total_value_traded, quote)} traded, "
            f"{event.orders_failed} failed, {ms}ms)"
        )
    reason = event.reason or "; ".join(e.message for e in event.errors) or "unknown error"
    return f"[Scheduler] ✗ Portfolio rebalance failed: {label} ({reason}, {ms}ms)"
