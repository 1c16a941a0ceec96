"""Turning ccxt's market, balance, ticker and order structures into the port's types.

Pure: plain dicts in, port dataclasses out. Numbers cross over through ``str`` so that a ccxt
float such as 0.1 becomes Decimal("0.1"), not its binary expansion.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from services.common.exchanges import port

# ccxt.base.decimal_to_precision's precision modes (checked against ccxt in the unit tests).
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4

_DEFAULT_FEE = Decimal("0.001")
_ORDER_STATUS: dict[str, port.OrderStatus] = {
    "open": "open",
    "closed": "closed",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "canceled",
    "rejected": "rejected",
}


def to_decimal(value: object) -> Decimal | None:
    """Decimal from a ccxt number or numeric string; None for missing or non-numeric values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def step_from_precision(precision: object, precision_mode: int) -> Decimal | None:
    """The smallest increment a quantity may move by, or None when it depends on magnitude.

    TICK_SIZE: ccxt's precision is the step itself (0.001). DECIMAL_PLACES: it is a number of
    decimals (3 -> 0.001). SIGNIFICANT_DIGITS: the step varies with the amount: no fixed step.
    """
    value = to_decimal(precision)
    if value is None:
        return None
    if precision_mode == TICK_SIZE:
        return value if value > 0 else None
    if precision_mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(value))
    return None


def _limit(market: Mapping[str, Any], kind: str) -> Decimal | None:
    limits = market.get("limits") or {}
    value = to_decimal((limits.get(kind) or {}).get("min"))
    return value if value is not None and value > 0 else None


def market_from_ccxt(market: Mapping[str, Any], precision_mode: int) -> port.Market:
    precision = market.get("precision") or {}
    return port.Market(
        symbol=str(market["symbol"]),
        base=str(market["base"]),
        quote=str(market["quote"]),
        min_amount=_limit(market, "amount"),
        min_cost=_limit(market, "cost"),
        amount_step=step_from_precision(precision.get("amount"), precision_mode),
        price_step=step_from_precision(precision.get("price"), precision_mode),
        maker_fee=to_decimal(market.get("maker")) or _DEFAULT_FEE,
        taker_fee=to_decimal(market.get("taker")) or _DEFAULT_FEE,
        # ccxt leaves ``active`` None when the exchange does not say: treat as tradable.
        active=market.get("active") is not False,
    )


def spot_markets_from_ccxt(
    markets: Mapping[str, Mapping[str, Any]], precision_mode: int
) -> dict[str, port.Market]:
    return {
        symbol: market_from_ccxt(m, precision_mode)
        for symbol, m in markets.items()
        if m.get("spot", m.get("type") == "spot") and m.get("base") and m.get("quote")
    }


_BALANCE_META = frozenset({"info", "free", "used", "total", "timestamp", "datetime", "debt"})


def balances_from_ccxt(balance: Mapping[str, Any]) -> dict[str, port.Balance]:
    """Free and total per currency; zero balances are dropped."""
    result: dict[str, port.Balance] = {}
    for code, entry in balance.items():
        if code in _BALANCE_META or not isinstance(entry, Mapping):
            continue
        total = to_decimal(entry.get("total"))
        free = to_decimal(entry.get("free"))
        if total is None and free is None:
            continue
        total = total if total is not None else free
        free = free if free is not None else total
        assert total is not None and free is not None
        if total == 0 and free == 0:
            continue
        result[str(code)] = port.Balance(free=free, total=total)
    return result


def price_from_ticker(ticker: Mapping[str, Any]) -> Decimal | None:
    """Last trade price; close, then the bid/ask midpoint, when the exchange gives no last."""
    for key in ("last", "close"):
        value = to_decimal(ticker.get(key))
        if value is not None and value > 0:
            return value
    bid, ask = to_decimal(ticker.get("bid")), to_decimal(ticker.get("ask"))
    if bid is not None and ask is not None and bid > 0 and ask > 0:
        return (bid + ask) / 2
    return None


def prices_from_tickers(tickers: Mapping[str, Mapping[str, Any]]) -> dict[str, Decimal]:
    prices: dict[str, Decimal] = {}
    for symbol, ticker in tickers.items():
        price = price_from_ticker(ticker)
        if price is not None:
            prices[symbol] = price
    return prices


def order_from_ccxt(
    order: Mapping[str, Any],
    *,
    client_order_id: str,
    symbol: str,
    side: port.Side,
    amount: Decimal,
) -> port.OrderResult:
    """An OrderResult; fields the exchange left out fall back to what was requested."""
    filled = to_decimal(order.get("filled")) or Decimal(0)
    average = to_decimal(order.get("average"))
    cost = to_decimal(order.get("cost"))
    if cost is None or cost == 0:
        cost = filled * average if average is not None else Decimal(0)
    if average is None and filled > 0 and cost > 0:
        average = cost / filled
    fee, fee_currency = _fee(order)
    raw_side = order.get("side")
    status = _ORDER_STATUS.get(str(order.get("status") or "open").lower(), "open")
    info = order.get("info")
    if isinstance(info, Mapping) and info.get("orderStatus") == "PartiallyFilledCanceled":
        # Bybit's end of a canceled partial fill (a spot market order's unfilled rest, too), which
        # ccxt reports as closed: it is canceled, with what filled before.
        status = "canceled"
    return port.OrderResult(
        client_order_id=client_order_id,
        exchange_order_id=str(order["id"]) if order.get("id") is not None else None,
        symbol=str(order.get("symbol") or symbol),
        side=raw_side if raw_side in ("buy", "sell") else side,
        status=status,
        amount=to_decimal(order.get("amount")) or amount,
        filled=filled,
        average_price=average,
        cost=cost,
        fee=fee,
        fee_currency=fee_currency,
        raw=dict(order.get("info") or {}) if isinstance(order.get("info"), Mapping) else {},
    )


def _fee(order: Mapping[str, Any]) -> tuple[Decimal, str | None]:
    fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
    charged: list[tuple[Decimal, str | None]] = []
    for fee in fees:
        cost = to_decimal(fee.get("cost")) if isinstance(fee, Mapping) else None
        if cost is not None:
            charged.append((cost, fee.get("currency")))
    # Fees in several currencies cannot be summed: the first currency charged is kept. A zero
    # entry charges nothing (Gate names its GT fee, "0", before the fee it charged).
    currency = next((c for cost, c in charged if cost), charged[0][1] if charged else None)
    return sum((cost for cost, c in charged if c == currency), Decimal(0)), currency
