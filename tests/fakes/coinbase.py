"""A fake Coinbase Advanced Trade REST API (``/api/v3/brokerage/*``) good enough for ccxt's coinbase class.

Public products (markets and tickers, spot only) and time; the v2 currency lists and exchange
rates ccxt's ``load_markets`` reads; the key's fee tier (transaction summary); the accounts of the
portfolio the key is scoped to (each names it as ``retail_portfolio_id``); placing, getting,
listing and canceling orders, and fills, in Coinbase's shapes (string numbers, RFC 3339 times,
``order_configuration``, ``has_next``/``cursor`` paging) and error bodies. Private calls need the
legacy HMAC headers (``CB-ACCESS-KEY`` equal to the configured key, ``CB-ACCESS-TIMESTAMP`` within
30 s, ``CB-ACCESS-SIGN`` over timestamp + method + path + body with the secret); anything else is
answered 401 ``Unauthorized``, as Coinbase does. Market orders are immediate-or-cancel
(``market_market_ioc``) and sized in the base (``base_size``) or the quote currency
(``quote_size``, converted at the last price). A ``client_order_id`` already used places nothing:
Coinbase answers with the order that has it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

from tests.fakes.engine import EngineError, ExchangeState, FakeFill, FakeMarket, FakeOrder, default_state
from tests.fakes.server import FakeExchangeServer, RecordedRequest, dec, finite_decimal, json_body_field

Json = dict[str, Any]
PrivateHandler = Callable[[web.Request, Json], Awaitable[web.Response]]

_MAX_CLOCK_SKEW = 30.0  # seconds Coinbase allows between CB-ACCESS-TIMESTAMP and its own clock
_STATUS = {"open": "OPEN", "closed": "FILLED", "canceled": "CANCELLED"}
_LISTABLE_STATUSES = frozenset(
    {"OPEN", "FILLED", "CANCELLED", "EXPIRED", "FAILED", "PENDING", "QUEUED", "CANCEL_QUEUED", "UNKNOWN_ORDER_STATUS"}
)
_MAX_CANCELS = 100  # order ids one batch_cancel takes
_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "USDC": "USDC", "USDT": "Tether"}
_FIAT = {"USD": "United States Dollar", "EUR": "Euro", "GBP": "British Pound"}
# Engine refusals as Coinbase's (error, message, preview_failure_reason).
_REFUSALS = {
    "insufficient_funds": ("INSUFFICIENT_FUND", "Insufficient balance in source account", "PREVIEW_INSUFFICIENT_FUND"),
    "invalid_order": ("UNKNOWN_FAILURE_REASON", "", "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL"),
    "unknown_symbol": ("INVALID_PRODUCT_ID", "", "PREVIEW_INVALID_PRODUCT_ID"),
}


def _error(error: str, message: str, status: int = 400) -> web.Response:
    """Coinbase's (gRPC gateway's) error body, which ccxt maps by ``error``."""
    return web.json_response({"error": error, "error_details": message, "message": message}, status=status)


def _unauthorized() -> web.Response:
    return web.Response(status=401, text="Unauthorized\n")


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str) -> float:
    """Seconds of an RFC 3339 time; ValueError when it is none."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()




class _Refused(Exception):
    """A create-order refusal: Coinbase answers it 200 with ``success: false``."""

    def __init__(self, error: str, message: str = "", preview: str = "") -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.preview = preview


@dataclass(frozen=True)
class _Sized:
    """An order request's ``order_configuration`` read: what the engine is asked for."""

    order_type: str  # market|limit
    amount: Decimal  # base currency
    price: Decimal | None  # limit price
    in_quote: bool  # sized by quote_size


class FakeCoinbase(FakeExchangeServer):
    order_path = "/api/v3/brokerage/orders"
    listing_page = 100
    key_header = "CB-ACCESS-KEY"
    private_paths = (
        "/api/v3/brokerage/accounts", "/api/v3/brokerage/orders", "/api/v3/brokerage/transaction_summary",
    )
    taker_fee = "0.006"  # the fee tier's taker_fee_rate, which ccxt gives every spot market

    def __init__(self, state: ExchangeState, api_key: str, secret: str, hang_seconds: float = 3.0) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        state.market_ioc = True  # market_market_ioc: the unfilled rest is canceled at once
        self._symbol_by_id = {self.product_id(s): s for s in state.markets}
        # The portfolio the API key is scoped to: every account listed, and every order, names it.
        self.portfolio_id = str(uuid.uuid4())
        self.user_id = str(uuid.uuid4())
        self.page_size = 250  # accounts per page at most (Coinbase's maximum ``limit``)
        self._configs: dict[str, Json] = {}  # each order's order_configuration as sent

    @staticmethod
    def product_id(symbol: str) -> str:
        return symbol.replace("/", "-")

    # ------------------------------------------------------------------ what tests read
    @property
    def orders(self) -> list[Json]:
        """The bodies of the create-order requests received."""
        return [json.loads(r.body) for r in self.requests if r.method == "POST" and r.path == self.order_path]

    @property
    def headers(self) -> list[dict[str, str]]:
        """The headers of the private requests received."""
        return [r.headers for r in self.requests if r.path.startswith(self.private_paths)]

    @property
    def balances(self) -> dict[str, Decimal]:
        return self.state.balances

    def named_account(self) -> str | None:
        return self.portfolio_id

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        return json_body_field(request, "client_order_id")

    def rate_limit_response(self) -> web.Response:
        return web.json_response({"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]},
                                 status=429)

    def not_found_response(self, request: web.Request) -> web.Response:
        return _error("NOT_FOUND", "Not Found", 404)

    # ------------------------------------------------------------------ routes
    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v2/time", self.v2_time)
        r.add_get("/v2/currencies", self.fiat_currencies)
        r.add_get("/v2/currencies/crypto", self.crypto_currencies)
        r.add_get("/v2/exchange-rates", self.exchange_rates)
        r.add_get("/api/v3/brokerage/time", self.server_time)
        r.add_get("/api/v3/brokerage/market/products", self.products)
        private_get: dict[str, PrivateHandler] = {
            "/api/v3/brokerage/transaction_summary": self.transaction_summary,
            "/api/v3/brokerage/accounts": self.accounts,
            # Before {order_id}: aiohttp matches routes in the order they were added.
            "/api/v3/brokerage/orders/historical/batch": self.list_orders,
            "/api/v3/brokerage/orders/historical/fills": self.list_fills,
            "/api/v3/brokerage/orders/historical/{order_id}": self.get_order,
        }
        private_post: dict[str, PrivateHandler] = {
            "/api/v3/brokerage/orders": self.create_order,
            "/api/v3/brokerage/orders/batch_cancel": self.cancel_orders,
        }
        for path, handler in private_get.items():
            r.add_get(path, self._private(handler))
        for path, handler in private_post.items():
            r.add_post(path, self._private(handler))

    def _authorized(self, request: web.Request, body: str) -> bool:
        headers = request.headers
        key, stamp, sign = (headers.get(h, "") for h in ("CB-ACCESS-KEY", "CB-ACCESS-TIMESTAMP", "CB-ACCESS-SIGN"))
        if self.reject_auth or not (key and stamp and sign) or key != self.api_key:
            return False
        try:
            if abs(time.time() - int(stamp)) > _MAX_CLOCK_SKEW:
                return False
        except ValueError:
            return False
        # Advanced Trade signs the path without its query.
        message = f"{stamp}{request.method}{request.path}{body}".encode()
        expected = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, sign)

    def _private(self, handler: PrivateHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def checked(request: web.Request) -> web.Response:
            text = await request.text() if request.method == "POST" else ""
            if not self._authorized(request, text):
                return _unauthorized()
            try:
                body = json.loads(text) if text else {}
            except ValueError:
                return _error("INVALID_ARGUMENT", "invalid character in request body")
            if not isinstance(body, dict):
                return _error("INVALID_ARGUMENT", "request body must be a JSON object")
            return await handler(request, body)

        return checked

    # ------------------------------------------------------------------ public
    async def v2_time(self, request: web.Request) -> web.Response:
        now = time.time()
        return web.json_response({"data": {"iso": _rfc3339(now), "epoch": int(now)}})

    async def server_time(self, request: web.Request) -> web.Response:
        now = time.time()
        return web.json_response(
            {"iso": _rfc3339(now), "epochSeconds": str(int(now)), "epochMillis": str(int(now * 1000))}
        )

    def _codes(self) -> set[str]:
        return {c for m in self.state.markets.values() for c in (m.base, m.quote)} | set(self.state.balances)

    async def fiat_currencies(self, request: web.Request) -> web.Response:
        rows = [{"id": c, "name": _FIAT[c], "min_size": "0.01"} for c in sorted(self._codes()) if c in _FIAT]
        return web.json_response({"data": rows})

    async def crypto_currencies(self, request: web.Request) -> web.Response:
        rows = [
            {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"coinbase-asset/{c}")), "code": c,
             "name": _NAMES.get(c, c), "color": "#5B6B7C", "sort_index": i, "exponent": 8, "type": "crypto",
             "address_regex": "^.+$"}
            for i, c in enumerate(sorted(self._codes() - set(_FIAT)))
        ]
        return web.json_response({"data": rows})

    async def exchange_rates(self, request: web.Request) -> web.Response:
        """GET /v2/exchange-rates: units of each currency one USD buys."""
        rates = {"USD": "1"}
        for symbol, price in self.state.prices.items():
            market = self.state.markets[symbol]
            if market.quote == "USD":
                rates[market.base] = dec((Decimal(1) / price).quantize(Decimal("1e-12")))
        return web.json_response({"data": {"currency": request.query.get("currency", "USD"), "rates": rates}})

    def _product_json(self, symbol: str, m: FakeMarket) -> Json:
        price = dec(self.state.prices[symbol])
        return {
            "product_id": self.product_id(symbol), "price": price, "price_percentage_change_24h": "0",
            "volume_24h": "100", "volume_percentage_change_24h": "0", "base_increment": dec(m.amount_step),
            "quote_increment": dec(m.price_step), "quote_min_size": dec(m.min_cost), "quote_max_size": "150000000",
            "base_min_size": dec(m.min_amount), "base_max_size": "3400", "base_name": _NAMES.get(m.base, m.base),
            "quote_name": _FIAT.get(m.quote, m.quote), "watched": False, "is_disabled": False, "new": False,
            "status": "online", "cancel_only": False, "limit_only": False, "post_only": False,
            "trading_disabled": False, "auction_mode": False, "product_type": "SPOT",
            "quote_currency_id": m.quote, "base_currency_id": m.base, "fcm_trading_session_details": None,
            "mid_market_price": "", "alias": "", "alias_to": [], "base_display_symbol": m.base,
            "quote_display_symbol": m.quote, "view_only": False, "price_increment": dec(m.price_step),
            "display_name": self.product_id(symbol), "product_venue": "CBE",
            "approximate_quote_24h_volume": dec(self.state.prices[symbol] * 100),
        }

    async def products(self, request: web.Request) -> web.Response:
        """GET /api/v3/brokerage/market/products: markets with their last price (ccxt's tickers too);
        this fake lists spot products only, so a FUTURE listing is empty."""
        product_type = request.query.get("product_type", "SPOT")
        if product_type not in ("SPOT", "FUTURE", "UNKNOWN_PRODUCT_TYPE"):
            return _error("INVALID_ARGUMENT", f"invalid value for enum type: {product_type!r}")
        wanted = set(request.query.getall("product_ids", []))
        rows = [
            self._product_json(symbol, market) for symbol, market in self.state.markets.items()
            if product_type != "FUTURE" and (not wanted or self.product_id(symbol) in wanted)
        ]
        return web.json_response({"products": rows, "num_products": len(rows)})

    # ------------------------------------------------------------------ account
    async def transaction_summary(self, request: web.Request, body: Json) -> web.Response:
        """GET /api/v3/brokerage/transaction_summary: the key's fee tier (one rate here)."""
        rate = dec(self.state.fee_rate)
        return web.json_response({
            "total_volume": 0, "total_fees": 0,
            "fee_tier": {"pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "10000",
                         "taker_fee_rate": rate, "maker_fee_rate": rate, "aop_from": "", "aop_to": ""},
            "margin_rate": None, "goods_and_services_tax": None, "advanced_trade_only_volume": 0,
            "advanced_trade_only_fees": 0, "coinbase_pro_volume": 0, "coinbase_pro_fees": 0,
            "total_balance": "", "has_promo_fee": False,
        })

    def _account_json(self, currency: str) -> Json:
        held = self.state.locked(currency)
        return {
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.portfolio_id}/{currency}")),
            "name": f"{currency} Wallet", "currency": currency,
            "available_balance": {"value": dec(self.state.free(currency)), "currency": currency},
            "default": True, "active": True, "created_at": "2024-01-02T03:04:05.000Z",
            "updated_at": _rfc3339(time.time()), "deleted_at": None,
            "type": "ACCOUNT_TYPE_FIAT" if currency in _FIAT else "ACCOUNT_TYPE_CRYPTO", "ready": True,
            "hold": {"value": dec(held), "currency": currency}, "retail_portfolio_id": self.portfolio_id,
            "platform": "ACCOUNT_PLATFORM_CONSUMER",
        }

    async def accounts(self, request: web.Request, body: Json) -> web.Response:
        """GET /api/v3/brokerage/accounts: one account per currency, paged by ``limit``/``cursor``."""
        limit = self._limit(request.query.get("limit"), self.page_size)
        if limit is None:
            return _error("INVALID_ARGUMENT", "limit must be a positive integer")
        currencies = list(self.state.balances)
        cursor = request.query.get("cursor") or "0"
        if not cursor.isdigit():
            return _error("INVALID_ARGUMENT", "invalid cursor")
        start = int(cursor)
        listed = currencies[start:start + limit]
        more = start + limit < len(currencies)
        return web.json_response({
            "accounts": [self._account_json(c) for c in listed],
            "has_next": more, "cursor": str(start + limit) if more else "", "size": len(listed),
        })

    @staticmethod
    def _limit(value: str | None, page: int) -> int | None:
        """A listing's page size: ``limit`` capped at ``page`` (``page`` when not sent); None when invalid."""
        if value is None or value == "":
            return page
        if not value.isdigit() or int(value) <= 0:
            return None
        return min(int(value), page)

    # ------------------------------------------------------------------ orders
    def _order_json(self, order: FakeOrder) -> Json:
        market = self.state.markets[order.symbol]
        config = self._configs.get(order.id, {})
        is_market = order.order_type == "market"
        in_quote = "quote_size" in config.get("market_market_ioc", {})
        last_fill = order.fills[-1].time if order.fills else None
        remaining = order.amount - order.filled if order.status == "open" else Decimal(0)
        hold = remaining * (order.price or Decimal(0)) * (1 + self.state.fee_rate) if order.side == "buy" else remaining
        value_after_fees = order.cost + order.fee if order.side == "buy" else order.cost - order.fee
        return {
            "order_id": order.id, "product_id": self.product_id(order.symbol), "user_id": self.user_id,
            "order_configuration": config, "side": order.side.upper(),
            "client_order_id": order.client_order_id or "", "status": _STATUS[order.status],
            "time_in_force": "IMMEDIATE_OR_CANCEL" if is_market else "GOOD_UNTIL_CANCELLED",
            "created_time": _rfc3339(order.created_at),
            "completion_percentage": dec((order.filled / order.amount * 100).quantize(Decimal("0.01"))),
            "filled_size": dec(order.filled),
            "average_filled_price": dec(order.average) if order.average is not None else "0",
            "fee": "", "number_of_fills": str(len(order.fills)), "filled_value": dec(order.cost),
            "pending_cancel": False, "size_in_quote": in_quote, "total_fees": dec(order.fee),
            "size_inclusive_of_fees": False, "total_value_after_fees": dec(value_after_fees),
            "trigger_status": "INVALID_ORDER_TYPE", "order_type": order.order_type.upper(),
            "reject_reason": "REJECT_REASON_UNSPECIFIED", "settled": order.status != "open",
            "product_type": "SPOT", "reject_message": "",
            "cancel_message": "IOC remainder canceled" if is_market and order.status == "canceled" else "",
            "order_placement_source": "RETAIL_ADVANCED", "outstanding_hold_amount": dec(hold),
            "is_liquidation": False, "last_fill_time": _rfc3339(last_fill) if last_fill else None,
            "edit_history": [], "leverage": "", "margin_type": "UNKNOWN_MARGIN_TYPE",
            "retail_portfolio_id": self.portfolio_id, "originating_order_id": "", "attached_order_id": "",
            "attached_order_configuration": None, "current_pending_replace": None,
            "commission_detail_total": None, "quote_currency": market.quote,
        }

    def _sized(self, market: FakeMarket, config: Json) -> _Sized:
        """The order an ``order_configuration`` asks for; refused like Coinbase when it is wrong."""
        kinds = [k for k, v in config.items() if isinstance(v, dict)]
        if len(kinds) != 1 or kinds[0] not in ("market_market_ioc", "limit_limit_gtc"):
            raise _Refused("UNSUPPORTED_ORDER_CONFIGURATION", "Unsupported order configuration")
        sizes = config[kinds[0]]
        base, quote = sizes.get("base_size"), sizes.get("quote_size")
        if kinds[0] == "limit_limit_gtc":
            price = finite_decimal(sizes.get("limit_price"))
            if price is None or price <= 0:
                raise _Refused("INVALID_LIMIT_PRICE", "", "PREVIEW_INVALID_LIMIT_PRICE")
            if price % market.price_step:
                raise _Refused("INVALID_PRICE_PRECISION", "", "PREVIEW_INVALID_PRICE_PRECISION")
            return _Sized("limit", self._base_size(market, base), price, False)
        if (base is None) == (quote is None):
            raise _Refused("INVALID_REQUEST", "exactly one of base_size and quote_size is required")
        if base is not None:
            return _Sized("market", self._base_size(market, base), None, False)
        spend = finite_decimal(quote)
        if spend is None or spend <= 0 or spend % market.price_step:
            raise _Refused("INVALID_SIZE_PRECISION", "", "PREVIEW_INVALID_QUOTE_SIZE_PRECISION")
        if spend < market.min_cost:
            raise _Refused("UNKNOWN_FAILURE_REASON", "", "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL")
        amount = (spend / self.state.prices[market.symbol]).quantize(market.amount_step, rounding=ROUND_DOWN)
        return _Sized("market", amount, None, True)

    @staticmethod
    def _base_size(market: FakeMarket, value: object) -> Decimal:
        size = finite_decimal(value)
        if size is None or size <= 0 or size % market.amount_step:
            raise _Refused("INVALID_SIZE_PRECISION", "", "PREVIEW_INVALID_BASE_SIZE_PRECISION")
        if size < market.min_amount:
            raise _Refused("UNKNOWN_FAILURE_REASON", "", "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL")
        return size

    def _place(self, body: Json) -> FakeOrder:
        symbol = self._symbol_by_id.get(str(body.get("product_id", "")))
        if symbol is None:
            raise _Refused(*_REFUSALS["unknown_symbol"])
        side = {"BUY": "buy", "SELL": "sell"}.get(str(body.get("side", "")))
        if side is None:
            raise _Refused("INVALID_SIDE", "", "PREVIEW_INVALID_SIDE")
        config = body.get("order_configuration")
        market = self.state.markets[symbol]
        sized = self._sized(market, config if isinstance(config, dict) else {})
        if not sized.in_quote and sized.amount * (sized.price or self.state.prices[symbol]) < market.min_cost:
            raise _Refused("UNKNOWN_FAILURE_REASON", "", "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL")
        try:
            order = self.state.place(symbol, side, sized.order_type, sized.amount, sized.price,
                                     str(body["client_order_id"]), str(uuid.uuid4()))
        except EngineError as exc:
            raise _Refused(*_REFUSALS.get(exc.kind, ("UNKNOWN_FAILURE_REASON", str(exc), ""))) from None
        self._configs[order.id] = self._echoed(config if isinstance(config, dict) else {})
        return order

    @staticmethod
    def _echoed(config: Json) -> Json:
        """The configuration as Coinbase echoes it: a limit order's post_only spelled out."""
        if "limit_limit_gtc" in config:
            return {"limit_limit_gtc": {"post_only": False, **config["limit_limit_gtc"]}}
        return config

    async def create_order(self, request: web.Request, body: Json) -> web.Response:
        """POST /api/v3/brokerage/orders: the new order's ids (no state), or ``success: false``."""
        client_id = body.get("client_order_id")
        if not isinstance(client_id, str) or not client_id:
            return _error("INVALID_ARGUMENT", "client_order_id is required")
        config = body.get("order_configuration", {})
        # A client_order_id already used places nothing: the order that has it is the answer.
        order = self.state.find(client_order_id=client_id)
        if order is None:
            try:
                order = self._place(body)
            except _Refused as refused:
                return web.json_response({
                    "success": False, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": "",
                    "error_response": {
                        "error": refused.error, "message": refused.message, "error_details": refused.message,
                        "preview_failure_reason": refused.preview or "UNKNOWN_PREVIEW_FAILURE_REASON",
                        "new_order_failure_reason": refused.error,
                    },
                    "order_configuration": config,
                })
        return web.json_response({
            "success": True, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": order.id,
            "success_response": {
                "order_id": order.id, "product_id": self.product_id(order.symbol),
                "side": order.side.upper(), "client_order_id": client_id,
            },
            "order_configuration": self._configs.get(order.id, config),
        })

    def _visible(self, order: FakeOrder) -> bool:
        """Closed orders are found only while ``closed_listed``."""
        return order.status == "open" or self.state.closed_listed

    async def get_order(self, request: web.Request, body: Json) -> web.Response:
        """GET /api/v3/brokerage/orders/historical/{order_id}: one order by its exchange id."""
        order = self.state.find(order_id=request.match_info["order_id"])
        if order is None or not self._visible(order):
            return _error("NOT_FOUND", "order with this orderID was not found", 404)
        return web.json_response({"order": self._order_json(order)})

    async def cancel_orders(self, request: web.Request, body: Json) -> web.Response:
        """POST /api/v3/brokerage/orders/batch_cancel: one result per order id (ids only)."""
        ids = body.get("order_ids")
        if not isinstance(ids, list) or not ids or len(ids) > _MAX_CANCELS:
            return _error("INVALID_ARGUMENT", f"order_ids must hold 1 to {_MAX_CANCELS} ids")
        return web.json_response({"results": [self._cancel(str(order_id)) for order_id in ids]})

    def _cancel(self, order_id: str) -> Json:
        order = self.state.find(order_id=order_id)
        if order is None:
            reason = "UNKNOWN_CANCEL_ORDER"
        elif order.status != "open":
            reason = "INVALID_CANCEL_REQUEST"
        else:
            self.state.cancel(order_id=order_id)
            return {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": order_id}
        return {"success": False, "failure_reason": reason, "order_id": order_id}

    @staticmethod
    def _time_range(query: Mapping[str, str], start: str, end: str) -> tuple[float, float]:
        """The ``start``/``end`` RFC 3339 bounds of a listing; ValueError when one is malformed."""
        low, high = query.get(start), query.get(end)
        return (_parse_time(low) if low else float("-inf"), _parse_time(high) if high else float("inf"))

    @staticmethod
    def _page(rows: list[Json], key: str, cursor: str, limit: int) -> Json:
        """One page of ``rows`` (newest first) after the row whose ``key`` is ``cursor``."""
        start = next((i + 1 for i, row in enumerate(rows) if row[key] == cursor), 0) if cursor else 0
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        return {"has_next": more, "cursor": page[-1][key] if more and page else "", "page": page}

    async def list_orders(self, request: web.Request, body: Json) -> web.Response:
        """GET /api/v3/brokerage/orders/historical/batch: the account's orders, newest first, filtered
        by status (repeatable; OPEN alone), product, side, type and creation time. Coinbase's list
        takes no client order id."""
        query = request.query
        statuses = set(query.getall("order_status", []))
        if statuses - _LISTABLE_STATUSES:
            return _error("INVALID_ARGUMENT", f"invalid order_status {sorted(statuses - _LISTABLE_STATUSES)}")
        if "OPEN" in statuses and len(statuses) > 1:
            return _error("INVALID_ARGUMENT", "OPEN is not allowed with other order statuses")
        limit = self._limit(query.get("limit"), self.listing_page or 100)
        if limit is None:
            return _error("INVALID_ARGUMENT", "limit must be a positive integer")
        try:
            since, until = self._time_range(query, "start_date", "end_date")
        except ValueError:
            return _error("INVALID_ARGUMENT", "start_date and end_date must be RFC 3339 times")
        products = set(query.getall("product_ids", [])) | set(query.getall("product_id", []))
        ids = set(query.getall("order_ids", []))
        side, types = query.get("order_side"), set(query.getall("order_types", []))
        rows = [
            self._order_json(order) for order in reversed(self.state.orders)
            if self._visible(order) and self.state.listed(order)
            and (not statuses or _STATUS[order.status] in statuses)
            and (not products or self.product_id(order.symbol) in products)
            and (not ids or order.id in ids)
            and (not side or order.side.upper() == side)
            and (not types or order.order_type.upper() in types)
            and since <= order.created_at <= until
        ]
        page = self._page(rows, "order_id", query.get("cursor", ""), limit)
        return web.json_response({"orders": page["page"], "sequence": "0", "has_next": page["has_next"],
                                  "cursor": page["cursor"]})

    def _fill_json(self, order: FakeOrder, fill: FakeFill) -> Json:
        return {
            "entry_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{order.id}/entry/{fill.id}")),
            "trade_id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{order.id}/trade/{fill.id}")),
            "order_id": order.id, "trade_time": _rfc3339(fill.time), "trade_type": "FILL",
            "price": dec(fill.price), "size": dec(fill.quantity), "commission": dec(fill.fee),
            "product_id": self.product_id(order.symbol), "sequence_timestamp": _rfc3339(fill.time),
            "liquidity_indicator": "TAKER", "size_in_quote": False, "user_id": self.user_id,
            "side": order.side.upper(), "retail_portfolio_id": self.portfolio_id,
        }

    def _fills(self, orders: Iterable[FakeOrder], since: float, until: float) -> list[Json]:
        rows = [(fill, self._fill_json(order, fill)) for order in orders for fill in order.fills
                if since <= fill.time <= until]
        rows.sort(key=lambda pair: (pair[0].time, pair[0].id), reverse=True)
        return [row for _, row in rows]

    async def list_fills(self, request: web.Request, body: Json) -> web.Response:
        """GET /api/v3/brokerage/orders/historical/fills: trades, newest first, by order and product."""
        query = request.query
        limit = self._limit(query.get("limit"), self.listing_page or 100)
        if limit is None:
            return _error("INVALID_ARGUMENT", "limit must be a positive integer")
        try:
            since, until = self._time_range(query, "start_sequence_timestamp", "end_sequence_timestamp")
        except ValueError:
            return _error("INVALID_ARGUMENT", "start and end sequence timestamps must be RFC 3339 times")
        ids = set(query.getall("order_ids", [])) | set(query.getall("order_id", []))
        products = set(query.getall("product_ids", [])) | set(query.getall("product_id", []))
        orders = [o for o in self.state.orders
                  if (not ids or o.id in ids) and (not products or self.product_id(o.symbol) in products)]
        page = self._page(self._fills(orders, since, until), "entry_id", query.get("cursor", ""), limit)
        return web.json_response({"fills": page["page"], "cursor": page["cursor"]})


@asynccontextmanager
async def start_fake_coinbase(
    state: ExchangeState | None = None,
    *,
    api_key: str = "cb-test-key-0123456789",
    secret: str = "cb-test-secret-abcdefghij",  # not a PEM key, nor 88 characters: ccxt signs with HMAC
    hang_seconds: float = 3.0,
) -> AsyncIterator[FakeCoinbase]:
    """A running fake Coinbase Advanced Trade API on 127.0.0.1 (random port)."""
    fake = FakeCoinbase(state or default_state("USD", Decimal("0.006")), api_key, secret, hang_seconds)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def coinbase_market(base: str = "BTC", quote: str = "USD") -> dict[str, Any]:
    """A ccxt market structure for Coinbase, as its load_markets would build it."""
    return {
        "id": f"{base}-{quote}", "symbol": f"{base}/{quote}", "base": base, "quote": quote,
        "baseId": base, "quoteId": quote, "type": "spot", "spot": True, "margin": False,
        "swap": False, "future": False, "option": False, "contract": False, "active": True,
        "taker": 0.006, "maker": 0.004,
        "precision": {"amount": 0.00000001, "price": 0.01},
        "limits": {"amount": {"min": 0.00001, "max": None}, "cost": {"min": 1, "max": None},
                   "price": {"min": None, "max": None}, "leverage": {"min": None, "max": None}},
        "info": {},
    }
