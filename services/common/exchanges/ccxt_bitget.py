"""Bitget's unified trading accounts (UTA) through ccxt's bitget class, mended where it gets them
wrong. Pure: what to send and how to read the answer, from Bitget's own fields.

ccxt (4.5.90) trades a unified account at Bitget's v3 endpoints but, on spot
(``tests/integration/test_ccxt_bitget_uta.py`` pins each against the fake of the v3 API):
- sends a market buy's base amount as ``qty``, which Bitget spends as quote: the buy's ``qty`` is
  sent as what it spends (its amount at the plan's price), as on classic accounts;
- reads a fill's price and value under the classic names (lost), and negates the fee Bitget states
  as the positive amount charged and gives it no currency: they are read from the order's own
  ``cumExecQty``, ``cumExecValue``, ``avgPrice`` and ``feeDetail``;
- raises Bitget's "order does not exist" (25204) as a bare error, not as not found: a look-up
  reads it as not found, so a miss can prove an order absent, as on classic accounts;
- reads every ticker without symbols as the USDT futures': the spot category is asked for.

Each mend reads or sends Bitget's own fields, so it stays right if ccxt comes to do the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.common.exchanges.ccxt_markets import to_decimal

# Bitget's v3 answer to an order it does not have (never placed, not listed yet, or no longer).
ORDER_NOT_FOUND = "25204"
_NOT_FOUND_CODE = re.compile(rf"(?<!\d){ORDER_NOT_FOUND}(?!\d)")
# Bitget's v3 market category of spot trading.
SPOT = {"category": "SPOT"}


def is_unified(options: Mapping[str, Any]) -> bool:
    """Whether ccxt trades this client's account as a unified one (the adapter read it)."""
    return options.get("uta") is True


def market_buy_params(spend: str) -> dict[str, str]:
    """A unified account's spot market buy spends its ``qty`` of the quote: sent as that, not as ccxt's
    base amount (request params override the request ccxt builds)."""
    return {"qty": spend}


def says_order_not_found(message: str) -> bool:
    """Whether an error Bitget answered says it has no such order (its code, not digits of a time)."""
    return _NOT_FOUND_CODE.search(message) is not None


def mended_order(order: Mapping[str, Any]) -> dict[str, Any]:
    """ccxt's order as Bitget's v3 answer (``info``) states its fill and fee; any other order as it
    is. A fee no coin is named for (nothing filled yet) is no fee."""
    info = order.get("info")
    mended = dict(order)
    if not isinstance(info, Mapping) or "cumExecQty" not in info:
        return mended
    filled, value, average = (to_decimal(info.get(k)) for k in ("cumExecQty", "cumExecValue", "avgPrice"))
    if filled is not None:
        mended["filled"] = filled
    if value is not None:
        mended["cost"] = value
    mended["average"] = average if average else None
    fees = []
    for detail in info.get("feeDetail") or []:
        cost = to_decimal(detail.get("fee")) if isinstance(detail, Mapping) else None
        if cost is not None and detail.get("feeCoin"):
            fees.append({"cost": cost, "currency": str(detail["feeCoin"])})
    mended["fees"] = fees
    mended["fee"] = fees[0] if fees else None
    return mended
