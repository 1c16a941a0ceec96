"""Deterministic client order ids per (run, leg), valid on each exchange, and how to send them.

The same (run, leg) always gives the same id, so a retried leg finds its order instead of placing a
second one. Exchanges disagree on the format:
- Binance: ``^[.A-Z:/a-z0-9_-]{1,36}$``; ccxt maps the unified ``clientOrderId`` to ``newClientOrderId``.
- Kraken ``cl_ord_id``: a UUID (long or 32-hex) or up to 18 free-text characters; ccxt maps the
  unified ``clientOrderId`` to ``cl_ord_id``.
- Coinbase ``client_order_id``: a UUID; ccxt ignores the unified parameter, so it is sent raw.
- OKX ``clOrdId``: alphanumeric, at most 32 characters.
- Gate ``text``: ``t-`` then up to 28 of ``[0-9A-Za-z_.-]``; ccxt refuses a text over 28 characters
  before it adds a missing ``t-``, and reads the order's ``clientOrderId`` back with the prefix, so
  the id is the whole text, prefix included (28 characters).
- KuCoin ``clientOid`` (at most 40) and Bitget ``clientOid``: ccxt maps the unified name.
Anything else gets 32 alphanumeric characters, accepted almost everywhere.
How an order is looked up by its id is ``order_lookup``'s.
"""

from __future__ import annotations

import re
import uuid

from contracts.envelope import uuid5_hex
from services.common.exchanges.ccxt_family import family

# Fixed forever: changing it would change every id and break look-ups of orders already placed.
_NAMESPACE = uuid.UUID("6f1d3c2e-8a4b-5c7d-9e0f-1a2b3c4d5e6f")

CLIENT_ID_RULES: dict[str, re.Pattern[str]] = {
    "binance": re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$"),
    "kraken": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    "coinbase": re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    "okx": re.compile(r"^[A-Za-z0-9]{1,32}$"),
    "gate": re.compile(r"^t-[0-9A-Za-z_.-]{1,26}$"),
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
    if exchange_id == "gate":
        # Gate orders were never placed with a longer id (ccxt refused every one), so none is lost.
        return "t-rb" + leg_hex[:24]
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
