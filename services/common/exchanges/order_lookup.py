"""How each exchange is asked for an order by its client order id, and whether a miss proves the
exchange does not have it.

A leg whose answer was lost is looked up by its client id; a leg not found is sent again. That is
safe only where a miss proves absence: the exchange was asked for that very order (Binance, OKX,
Bitget), listed only orders with that id (Kraken, Bybit), or showed every order since the leg's run
began, page after page (Coinbase, Gate, KuCoin). Elsewhere (ccxt's generic path) the id is matched
in a page of the account's newest orders, a busy account's order can be past it, and the executor
never sends such a leg again (``services.executor.resend``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from services.common.exchanges.ccxt_family import family


@dataclass(frozen=True)
class OrderLookup:
    # The ccxt ``fetch_order`` param that asks for one order by its client id, if the exchange's
    # order endpoint takes one, and whether that endpoint finds open orders alone (Gate, KuCoin).
    by_id_param: str | None = None
    by_id_open_only: bool = False
    # The ccxt param that has the exchange's listings hold only the order with the client id.
    listing_filter_param: str | None = None
    # The ccxt listings the id is looked for in, in turn, where not open then closed orders.
    listings: tuple[str, ...] | None = None
    # The ccxt method that lists every order since a time, and how its pages go: "cursor" (ccxt
    # leaves the next page's cursor in the raw answer of one order of a page) or "until" (each page
    # ends at the creation time of the last one's oldest order; never by page number, whose pages
    # shift when an order leaves the listing).
    since_listing: str | None = None
    pages_by: Literal["cursor", "until"] = "cursor"

    @property
    def proves_absence(self) -> bool:
        """Whether a miss means the exchange does not have the order (once it has had time to
        list it); otherwise it proves nothing."""
        asked = self.by_id_param is not None and not self.by_id_open_only
        return asked or self.listing_filter_param is not None or self.since_listing is not None

    def listing_methods(self, has: Mapping[str, Any]) -> tuple[str, ...]:
        """The ccxt listings to look the id up in (``has``: the ccxt class's capabilities)."""
        if self.listings is not None:
            return self.listings
        return ("fetch_open_orders", "fetch_closed_orders" if has.get("fetchClosedOrders") else "fetch_orders")


LOOKUPS: dict[str, OrderLookup] = {
    # GET /api/v3/order?origClientOrderId= (ccxt maps the unified clientOrderId).
    "binance": OrderLookup(by_id_param="clientOrderId"),
    # GET /api/v5/trade/order?clOrdId=.
    "okx": OrderLookup(by_id_param="clOrdId"),
    # GET /api/v2/spot/trade/orderInfo?clientOid=: an order Bitget does not have is an empty list,
    # which ccxt raises as OrderNotFound (ccxt maps the unified clientOrderId).
    "bitget": OrderLookup(by_id_param="clientOrderId"),
    # Kraken's listings take cl_ord_id (its fetch_order maps a unified clientOrderId to userref).
    "kraken": OrderLookup(listing_filter_param="clientOrderId"),
    # Bybit's listings take orderLinkId; its closed orders are its filled ones alone, so a canceled
    # partial fill is looked for among the canceled ones too.
    "bybit": OrderLookup(
        listing_filter_param="orderLinkId", listings=("fetch_open_orders", "fetch_canceled_and_closed_orders")
    ),
    # Coinbase's listing takes no client id but a start time and a cursor, and ccxt's closed orders
    # are its filled ones alone: every order of any status since the run began.
    "coinbase": OrderLookup(since_listing="fetch_orders", pages_by="cursor"),
    # Gate finds an order by its text while it is open alone; its finished orders are listed from a
    # start time (``from``), each page ending (``to``) where the last one did (ccxt sends the text as
    # the path's order id).
    "gate": OrderLookup(
        by_id_param="clientOrderId", by_id_open_only=True, since_listing="fetch_closed_orders", pages_by="until"
    ),
    # KuCoin (classic account) finds an order by its clientOid while it is active alone ("order not
    # exist." once it is done); its done orders are listed from a start time (``startAt``), each page
    # ending (``endAt``) where the last one did.
    "kucoin": OrderLookup(
        by_id_param="clientOid", by_id_open_only=True, since_listing="fetch_closed_orders", pages_by="until"
    ),
}
_GENERIC = OrderLookup()


def order_lookup(exchange_id: str) -> OrderLookup:
    """How ``exchange_id`` (a regional entity as its family) is asked for an order by client id."""
    if exchange_id.startswith("binance"):
        return LOOKUPS["binance"]
    return LOOKUPS.get(exchange_id) or LOOKUPS.get(family(exchange_id), _GENERIC)
