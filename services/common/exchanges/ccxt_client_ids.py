"""Deterministic client order ids per (run, leg), valid on each exchange, and how to send them.

The same (run, leg) always gives the same id, so a retried leg finds its order instead of placing a
second one. Exchanges disagree on the format:
- Binance: ``^[.A-Z:/a-z0-9_-]{1,36}$``; ccxt maps the unified ``clientOrderId`` to ``newClientOrderId``.
- Kraken ``cl_ord_id``: a UUID (long or 32-hex) or up to 18 free-text characters; ccxt maps the
  unified ``clientOrderId`` to ``cl_ord_id``.
- Coinbase ``client_order_id``: a UUID; ccxt ignores the unified parameter, so it is sent raw.
- OKX ``clOrdId``: alphanumeric, at most 32 characters.
Anything else gets 32 alphanumeric characters, accepted almost everywhere.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from contracts.envelope import uuid5_hex
from services.common.exchanges.ccxt_family import family

# Fixed forever: changing it would change every id and break look-ups of orders already placed.
_NAMESPACE = uuid.UUID("6f1d3c2e-8a4b-5c7d-9e0f-1a2b3c4d5e6f")

CLIENT_ID_RULES: dict[str, re.Pattern[str]] = {
    "binance": re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$"),
    "kraken": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    "coinbase": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    "okx": re.compile(r"^[A-Za-z0-9]{1,32}$"),
}
_DEFAULT_RULE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_UUID_EXCHANGES = frozenset({"kraken", "coinbase", "coinbaseadvanced", "coinbaseexchange"})


def client_order_id_for(exchange_id: str, run_id: str, leg: int) -> str:
    """The client order id of leg ``leg`` of run ``run_id`` on ``exchange_id``."""
    if leg < 0:
        raise ValueError("leg must be >= 0")
    name = f"{uuid.UUID(str(run_id))}:{leg}"
    if exchange_id in _UUID_EXCHANGES:
        return uuid5_hex(_NAMESPACE, name, dashed=True)
    leg_hex = uuid5_hex(_NAMESPACE, name, dashed=False)
    if exchange_id == "binance" or exchange_id.startswith("binance"):
        return "rb-" + leg_hex  # 35 characters, readable prefix
    return "rb" + leg_hex[:30]


def is_valid_client_order_id(exchange_id: str, client_order_id: str) -> bool:
    rule = CLIENT_ID_RULES.get(exchange_id) or CLIENT_ID_RULES.get(family(exchange_id), _DEFAULT_RULE)
    return rule.fullmatch(client_order_id) is not None


def client_order_params(exchange_id: str, client_order_id: str) -> dict[str, str]:
    """The ccxt ``params`` that carry the client order id the way ``exchange_id`` wants it."""
    if exchange_id in ("coinbase", "coinbaseadvanced"):
        return {"client_order_id": client_order_id}
    if family(exchange_id) == "okx":
        return {"clOrdId": client_order_id}
    # Binance (-> newClientOrderId), Kraken (-> cl_ord_id) and most others map the unified name.
    return {"clientOrderId": client_order_id}


def order_lookup_by_client_id(exchange_id: str, client_order_id: str) -> dict[str, str] | None:
    """The ccxt ``fetch_order`` params that ask the exchange for one order by its client order id,
    where its order endpoint takes one (Binance ``origClientOrderId``, OKX ``clOrdId``)."""
    if exchange_id.startswith("binance"):
        return {"clientOrderId": client_order_id}  # ccxt sends it as origClientOrderId
    if family(exchange_id) == "okx":
        return {"clOrdId": client_order_id}
    return None


def order_listings(exchange_id: str, has: Mapping[str, Any]) -> list[str]:
    """The ccxt methods that list the orders a client order id is looked for in, in turn."""
    if family(exchange_id) == "bybit":
        # Bybit's closed orders are its filled ones alone: a canceled partial fill would be missed.
        return ["fetch_open_orders", "fetch_canceled_and_closed_orders"]
    return ["fetch_open_orders", "fetch_closed_orders" if has.get("fetchClosedOrders") else "fetch_orders"]


def order_listing_filter(exchange_id: str, client_order_id: str) -> dict[str, str]:
    """The ccxt params that have the exchange list only the order with ``client_order_id``, where
    its listings filter by it (Kraken ``cl_ord_id``, Bybit ``orderLinkId``); elsewhere the
    listing is matched here."""
    if exchange_id == "kraken":
        # Kraken maps a unified clientOrderId to userref in fetch_order; its listings take cl_ord_id.
        return {"clientOrderId": client_order_id}
    if family(exchange_id) == "bybit":
        return {"orderLinkId": client_order_id}
    return {}


def lists_orders_since(exchange_id: str) -> bool:
    """Whether the client id is looked for in every order placed since its run began, page after
    page (Coinbase: its listing takes no client id, but a start time and a cursor, and ccxt's
    closed orders are its filled ones alone)."""
    return exchange_id == "coinbase"


def finds_orders_by_client_id(exchange_id: str) -> bool:
    """Whether ``exchange_id`` is asked for an order by its client order id (``order_lookup_by_client_id``
    or a filtered listing) or shows every order since its run began (``lists_orders_since``), so
    that a miss means it does not have the order; elsewhere the client id is matched in a page of
    the newest orders, and a miss proves nothing."""
    probe = "0"  # the rules depend on the exchange alone
    return (
        order_lookup_by_client_id(exchange_id, probe) is not None
        or bool(order_listing_filter(exchange_id, probe))
        or lists_orders_since(exchange_id)
    )
