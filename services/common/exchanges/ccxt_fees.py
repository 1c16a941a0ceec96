"""An order's fee when the order itself does not carry it: summed from the order's trades.

Pure (no ccxt import, no I/O). Some exchanges answer order look-ups and cancels without the
commission (Binance's GET and DELETE /api/v3/order); the fee is then in the account's trade
history, one commission per trade. A fee that cannot be established is *unknown*, never 0: the
result is marked (``FEE_UNKNOWN``) with the reason, and its fee currency is None.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.common.exchanges import port
from services.common.exchanges.ccxt_markets import to_decimal

# Key in ``OrderResult.raw`` holding why the fee of a filled order is not known.
FEE_UNKNOWN = "fee_unknown"


class FeeNotDerivable(ValueError):
    """The trades do not establish the order's fee; the message says why."""


@dataclass(frozen=True)
class FeeTotal:
    amount: Decimal
    currency: str


def _fee_entries(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    # ccxt sets both ``fee`` and ``fees`` (the same charge twice): read ``fees`` when present.
    fees = item.get("fees") or ([item["fee"]] if item.get("fee") else [])
    return [f for f in fees if isinstance(f, Mapping) and to_decimal(f.get("cost")) is not None]


def reports_fee(order: Mapping[str, Any]) -> bool:
    """Whether a ccxt order states its fee (a cost, possibly 0) rather than leaving it out."""
    return bool(_fee_entries(order))


def needs_fee_from_trades(result: port.OrderResult, order: Mapping[str, Any]) -> bool:
    """A filled order whose answer left the fee out: its trades must say what was charged."""
    return result.filled > 0 and not reports_fee(order) and result.exchange_order_id is not None


def trades_of_order(trades: Sequence[Mapping[str, Any]], exchange_order_id: str) -> list[Mapping[str, Any]]:
    """The trades that belong to the order (a trade that names no order is taken as the order's:
    only per-order endpoints leave it out)."""
    return [t for t in trades if t.get("order") is None or str(t.get("order")) == exchange_order_id]


def market_currencies(symbol: str) -> tuple[str, str]:
    """Base and quote of a unified symbol ("BTC/USDT", or "BTC/USDT:USDT" for a contract)."""
    base, _, rest = symbol.partition("/")
    return base, rest.split(":")[0]


def fee_from_trades(
    trades: Sequence[Mapping[str, Any]], *, filled: Decimal, base: str, quote: str
) -> FeeTotal:
    """The fee charged for an order that filled ``filled`` (base units), from its ccxt trades.

    One fee currency: the sum. Fees in the market's base and quote: the base part is converted
    into the quote at each trade's own price. Any other mix (a BNB discount on some trades) has no
    price here: not derivable. Trades that do not add up to ``filled`` are an incomplete (or still
    growing) history: not derivable either, rather than a fee for part of the order.
    """
    if not trades:
        raise FeeNotDerivable("the exchange lists no trades for the order")
    traded = sum((to_decimal(t.get("amount")) or Decimal(0) for t in trades), Decimal(0))
    if traded != filled:
        raise FeeNotDerivable(f"the order's trades add up to {traded}, the order filled {filled}")
    by_currency: dict[str, Decimal] = {}
    in_quote = Decimal(0)
    for trade in trades:
        entries = _fee_entries(trade)
        if not entries:
            raise FeeNotDerivable(f"trade {trade.get('id')} states no fee")
        price = to_decimal(trade.get("price"))
        for entry in entries:
            cost = to_decimal(entry.get("cost")) or Decimal(0)
            currency = entry.get("currency")
            if not isinstance(currency, str) or not currency:
                raise FeeNotDerivable(f"trade {trade.get('id')} states a fee without its currency")
            by_currency[currency] = by_currency.get(currency, Decimal(0)) + cost
            if currency == quote:
                in_quote += cost
            elif currency == base and price is not None and price > 0:
                in_quote += cost * price
    if len(by_currency) == 1:
        [(currency, amount)] = by_currency.items()
        return FeeTotal(amount, currency)
    if set(by_currency) <= {base, quote} and all(to_decimal(t.get("price")) for t in trades):
        return FeeTotal(in_quote, quote)
    listed = ", ".join(f"{amount} {currency}" for currency, amount in sorted(by_currency.items()))
    raise FeeNotDerivable(f"fees in several currencies that cannot be combined: {listed}")


def with_fee(result: port.OrderResult, fee: FeeTotal) -> port.OrderResult:
    return dataclasses.replace(result, fee=fee.amount, fee_currency=fee.currency)


def with_unknown_fee(result: port.OrderResult, reason: str) -> port.OrderResult:
    """The order as reported, its fee marked unknown: fee 0 with no currency, and the reason."""
    return dataclasses.replace(
        result, fee=Decimal(0), fee_currency=None, fee_known=False, raw={**result.raw, FEE_UNKNOWN: reason}
    )


def fee_unknown_reason(result: port.OrderResult) -> str | None:
    """Why this filled order's fee is not known, or None when it is."""
    reason = result.raw.get(FEE_UNKNOWN)
    return reason if isinstance(reason, str) else None
