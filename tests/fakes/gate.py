"""A fake Gate.io REST API v4 (``/api/v4/*``, spot only, a classic account) for ccxt's gate class.

Public: server time, currencies, spot currency pairs and tickers; the margin pairs and the futures,
delivery and options contract lists ccxt's ``load_markets`` also reads (empty: spot only). Private:
the API key's account (``/account/detail``, key mode 1: classic), spot balances, placing, getting,
listing and canceling orders, and trades, in Gate's shapes (string numbers, order ``status``
open/closed/cancelled with ``finish_as``) and error bodies (``{"label", "message"}``). Private calls
need ``KEY`` (the configured key), a ``Timestamp`` within 60 s and ``SIGN``, the HMAC-SHA512 of
method, path, query, the body's SHA-512 and the timestamp, checked as Gate does.

Gate's rules honoured: a market buy's ``amount`` is the quote to spend; market orders are
immediate-or-cancel (the unfilled rest is canceled at once, ``finish_as`` "ioc"); ``text``, the
client order id, is ``t-`` and at most 28 characters of ``[0-9A-Za-z_.-]``; an order is asked for
by its id or, while it is open, by its text (Gate's spot documentation: "Operations based on custom
IDs can only be checked in pending orders. Only order ID can be used after the order is finished";
``text_lookup_window`` lets a finished one be found for a while, as older documentation said);
listings are page-numbered (``page``, ``limit``), newest first. Gate does not keep a canceled order
that never traded: the finished listing drops it after ``unfilled_cancel_retention`` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

from tests.fakes.engine import EngineError, ExchangeState, FakeFill, FakeMarket, FakeOrder, default_state
from tests.fakes.server import FakeExchangeServer, RecordedRequest, dec, finite_decimal, json_body_field

Json = dict[str, Any]
PrivateHandler = Callable[[web.Request, Json], Awaitable[web.Response]]

_API = "/api/v4"
_MAX_CLOCK_SKEW = 60.0  # seconds Gate allows between Timestamp and its own clock
_TEXT = re.compile(r"^t-[0-9A-Za-z_.-]{1,28}$")
_STATUS = {"open": "open", "closed": "closed", "canceled": "cancelled"}
_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "USDT": "Tether", "USDC": "USD Coin"}
_ORDER_ID_BASE = 370_000_000_000  # Gate's spot order ids are 12-digit numbers (as strings)
_TRADE_ID_BASE = 5_100_000_000


def _error(label: str, message: str, status: int = 400) -> web.Response:
    """Gate's error body, which ccxt maps by ``label``."""
    return web.json_response({"label": label, "message": message}, status=status)




def _decimals(step: Decimal) -> int:
    """Gate states precisions as numbers of decimals (0.01 -> 2)."""
    return -step.normalize().as_tuple().exponent  # type: ignore[operator]


class _Refused(Exception):
    def __init__(self, label: str, message: str) -> None:
        super().__init__(message)
        self.label = label
        self.message = message


@dataclass(frozen=True)
class _Sent:
    """What an order request said that the engine does not keep."""

    amount: str  # as sent: the quote to spend for a market buy, else the base amount
    time_in_force: str
    spend: Decimal | None  # a market buy's quote amount


class FakeGate(FakeExchangeServer):
    order_path = f"{_API}/spot/orders"
    listing_page = 100  # Gate's default ``limit``, and its maximum for open orders
    key_header = "KEY"
    private_paths = (f"{_API}/account/", f"{_API}/spot/accounts", f"{_API}/spot/orders",
                     f"{_API}/spot/open_orders", f"{_API}/spot/my_trades")
    taker_fee = "0.002"  # the pair's ``fee`` (0.2 %), which ccxt gives the market
    fee_in_received = True  # a buy's fee is charged in the coin it buys

    def __init__(self, state: ExchangeState, api_key: str, secret: str, hang_seconds: float = 3.0) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        state.market_ioc = True  # market orders are ioc (or fok): the unfilled rest is canceled at once
        self._symbol_by_id = {self.pair_id(s): s for s in state.markets}
        self.uid = 10406147  # the account's user_id, which /account/detail names
        self.other_api_keys: set[str] = set()  # more keys of the account (signed with the same secret)
        # A listing that answers its first page whatever page or end time is asked (as an endpoint
        # that pages by another parameter would): a look-up must not take it for the whole list.
        self.paging_ignored = False
        self.text_lookup_window = 0.0  # seconds a finished order is still found by its text
        self.unfilled_cancel_retention = 60.0  # seconds a canceled order without fills stays listed
        # The key opens a unified account (/account/detail's key mode 2); nothing more of one is
        # modelled (its balances and orders are another account's), so only the mode read is tested.
        self.unified = False
        # The key may not read its account's detail (it lacks that permission): 403 FORBIDDEN.
        self.detail_forbidden = False
        self._sent: dict[str, _Sent] = {}

    @staticmethod
    def pair_id(symbol: str) -> str:
        return symbol.replace("/", "_")

    def named_account(self) -> str | None:
        return str(self.uid)

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        return json_body_field(request, "text")

    def rate_limit_response(self) -> web.Response:
        reset = int(time.time() * 1000) + 1000
        return web.json_response(
            {"label": "TOO_MANY_REQUESTS", "message": "Request Rate limit Exceeded (007)"}, status=429,
            headers={"X-Gate-RateLimit-Requests-Remain": "0", "X-Gate-RateLimit-Limit": "10",
                     "X-Gate-RateLimit-Reset-Timestamp": str(reset)},
        )

    def not_found_response(self, request: web.Request) -> web.Response:
        return _error("NOT_FOUND", f"Not Found: {request.path}", 404)

    # ------------------------------------------------------------------ routes
    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{_API}/spot/time", self.server_time)
        r.add_get(f"{_API}/spot/currencies", self.currencies)
        r.add_get(f"{_API}/spot/currency_pairs", self.currency_pairs)
        r.add_get(f"{_API}/spot/tickers", self.tickers)
        r.add_get(f"{_API}/margin/currency_pairs", self.no_contracts)
        r.add_get(f"{_API}/futures/{{settle}}/contracts", self.no_contracts)
        r.add_get(f"{_API}/delivery/{{settle}}/contracts", self.no_contracts)
        r.add_get(f"{_API}/options/underlyings", self.no_contracts)
        private: list[tuple[str, str, PrivateHandler]] = [
            ("GET", "/account/detail", self.account_detail),
            ("GET", "/spot/accounts", self.accounts),
            ("POST", "/spot/orders", self.create_order),
            ("GET", "/spot/orders", self.list_orders),
            ("GET", "/spot/open_orders", self.open_orders),
            ("GET", "/spot/orders/{order_id}", self.get_order),
            ("DELETE", "/spot/orders/{order_id}", self.cancel_order),
            ("GET", "/spot/my_trades", self.my_trades),
        ]
        for method, path, handler in private:
            r.add_route(method, _API + path, self._private(handler))

    def _refusal(self, request: web.Request, body: str) -> web.Response | None:
        """Gate's 401 for a request it does not authenticate; None when it does."""
        headers = request.headers
        for name in ("KEY", "Timestamp", "SIGN"):
            if not headers.get(name):
                return _error("MISSING_REQUIRED_HEADER", f"Missing required header: {name}", 401)
        if self.reject_auth or headers["KEY"] not in {self.api_key, *self.other_api_keys}:
            return _error("INVALID_KEY", "Invalid key provided", 401)
        try:
            stamp = float(headers["Timestamp"])
        except ValueError:
            return _error("INVALID_SIGNATURE", "Signature mismatch", 401)
        if abs(time.time() - stamp) > _MAX_CLOCK_SKEW:
            gap = f"gap between request Timestamp and server time exceeds {_MAX_CLOCK_SKEW:g}"
            return _error("REQUEST_EXPIRED", gap, 401)
        # The query is signed as sent, without URL encoding; the body by its SHA-512.
        payload = "\n".join((request.method, request.path, request.query_string,
                             hashlib.sha512(body.encode()).hexdigest(), headers["Timestamp"]))
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha512).hexdigest()
        if not hmac.compare_digest(expected, headers["SIGN"]):
            return _error("INVALID_SIGNATURE", "Signature mismatch", 401)
        return None

    def _private(self, handler: PrivateHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def checked(request: web.Request) -> web.Response:
            text = await request.text()  # read (and kept) by the base class already
            refused = self._refusal(request, text)
            if refused is not None:
                return refused
            try:
                body = json.loads(text) if text else {}
            except ValueError:
                return _error("INVALID_REQUEST_BODY", "Invalid request body")
            if not isinstance(body, dict):
                return _error("INVALID_REQUEST_BODY", "Invalid request body")
            return await handler(request, body)

        return checked

    # ------------------------------------------------------------------ public
    async def server_time(self, request: web.Request) -> web.Response:
        return web.json_response({"server_time": int(time.time() * 1000)})

    async def no_contracts(self, request: web.Request) -> web.Response:
        """Margin pairs, futures, delivery and options contracts: none (this fake is spot only)."""
        return web.json_response([])

    async def currencies(self, request: web.Request) -> web.Response:
        codes = sorted({c for m in self.state.markets.values() for c in (m.base, m.quote)} | set(self.state.balances))
        chain = {"BTC": "BTC", "SOL": "SOL"}
        rows = []
        for code in codes:
            network = chain.get(code, "ETH")
            rows.append({
                "currency": code, "name": _NAMES.get(code, code), "delisted": False, "withdraw_disabled": False,
                "withdraw_delayed": False, "deposit_disabled": False, "trade_disabled": False, "fixed_rate": "",
                "chain": network, "chains": [{"name": network, "addr": "", "withdraw_disabled": False,
                                              "withdraw_delayed": False, "deposit_disabled": False}],
            })
        return web.json_response(rows)

    def _pair_json(self, symbol: str, m: FakeMarket) -> Json:
        return {
            "id": self.pair_id(symbol), "base": m.base, "base_name": _NAMES.get(m.base, m.base), "quote": m.quote,
            "quote_name": _NAMES.get(m.quote, m.quote), "fee": dec(self.state.fee_rate * 100),
            "min_base_amount": dec(m.min_amount), "min_quote_amount": dec(m.min_cost), "max_base_amount": "",
            "max_quote_amount": "5000000", "amount_precision": _decimals(m.amount_step),
            "precision": _decimals(m.price_step), "trade_status": "tradable", "sell_start": 1516378650,
            "buy_start": 1516378650, "delisting_time": 0, "type": "normal",
            "trade_url": f"https://www.gate.com/trade/{self.pair_id(symbol)}", "st_tag": False,
        }

    async def currency_pairs(self, request: web.Request) -> web.Response:
        return web.json_response([self._pair_json(s, m) for s, m in self.state.markets.items()])

    async def tickers(self, request: web.Request) -> web.Response:
        wanted = request.query.get("currency_pair")
        if wanted is not None and wanted not in self._symbol_by_id:
            return _error("INVALID_CURRENCY_PAIR", f"Invalid currency pair {wanted}")
        rows = []
        for symbol, price in self.state.prices.items():
            if wanted is not None and self.pair_id(symbol) != wanted:
                continue
            p = dec(price)
            rows.append({
                "currency_pair": self.pair_id(symbol), "last": p, "lowest_ask": p, "lowest_size": "1",
                "highest_bid": p, "highest_size": "1", "change_percentage": "0", "change_utc0": "0",
                "change_utc8": "0", "base_volume": "100", "quote_volume": dec(price * 100), "high_24h": p,
                "low_24h": p,
            })
        return web.json_response(rows)

    # ------------------------------------------------------------------ account
    async def account_detail(self, request: web.Request, body: Json) -> web.Response:
        """GET /account/detail: the key's account; ``key.mode`` 1 is a classic account (2: unified)."""
        if self.detail_forbidden:
            return _error("FORBIDDEN", "Your API key does not have the permission to access this endpoint", 403)
        return web.json_response({
            "user_id": self.uid, "ip_whitelist": [], "currency_pairs": [], "key": {"mode": 2 if self.unified else 1},
            "tier": 0,
            "tier_expire_time": "0001-01-01T00:00:00Z", "copy_trading_role": 0,
        })

    async def accounts(self, request: web.Request, body: Json) -> web.Response:
        """GET /spot/accounts: available and locked per currency (``currency`` picks one)."""
        wanted = request.query.get("currency")
        rows = [
            {"currency": c, "available": dec(self.state.free(c)), "locked": dec(self.state.locked(c)), "update_id": 1}
            for c in self.state.balances if wanted is None or c == wanted
        ]
        return web.json_response(rows)

    # ------------------------------------------------------------------ orders
    def _new_order_id(self) -> str:
        return str(_ORDER_ID_BASE + self.state.next_number())

    @staticmethod
    def _finish_as(order: FakeOrder, time_in_force: str) -> str:
        if order.status == "open":
            return "open"
        if order.status == "closed":
            return "filled"
        return "ioc" if time_in_force == "ioc" else "cancelled"

    def _order_json(self, order: FakeOrder) -> Json:
        market = self.state.markets[order.symbol]
        sent = self._sent.get(order.id) or _Sent(dec(order.amount), "gtc", None)
        left = sent.spend - order.cost if sent.spend is not None else order.amount - order.filled
        updated = order.closed_at or (order.fills[-1].time if order.fills else order.created_at)
        return {
            "id": order.id, "text": order.client_order_id or "apiv4", "amend_text": "-",
            "create_time": str(int(order.created_at)), "update_time": str(int(updated)),
            "create_time_ms": int(order.created_at * 1000), "update_time_ms": int(updated * 1000),
            "status": _STATUS[order.status], "currency_pair": self.pair_id(order.symbol), "type": order.order_type,
            "account": "spot", "side": order.side, "amount": sent.amount,
            "price": dec(order.price) if order.price is not None else "0", "time_in_force": sent.time_in_force,
            "iceberg": "0", "left": dec(left), "filled_amount": dec(order.filled), "fill_price": dec(order.cost),
            "filled_total": dec(order.cost), "avg_deal_price": dec(order.average) if order.average else "0",
            "fee": dec(order.fee), "fee_currency": order.fills[0].fee_currency if order.fills else market.quote,
            "point_fee": "0", "gt_fee": "0", "gt_maker_fee": "0", "gt_taker_fee": "0", "gt_discount": False,
            "rebated_fee": "0", "rebated_fee_currency": market.quote, "stp_id": 0, "stp_act": "-",
            "finish_as": self._finish_as(order, sent.time_in_force),
        }

    def _symbol(self, pair: object) -> str:
        symbol = self._symbol_by_id.get(str(pair or ""))
        if symbol is None:
            raise _Refused("INVALID_CURRENCY_PAIR", f"Invalid currency pair {pair}")
        return symbol

    @staticmethod
    def _too_small(size: Decimal, minimum: Decimal, currency: str) -> _Refused:
        message = f"Your order size {dec(size)} {currency} is too small. The minimum is {dec(minimum)} {currency}"
        return _Refused("INVALID_PARAM_VALUE", message)

    def _place(self, body: Json) -> FakeOrder:
        symbol = self._symbol(body.get("currency_pair"))
        market = self.state.markets[symbol]
        text = body.get("text")
        if text is not None and not (isinstance(text, str) and _TEXT.fullmatch(text)):
            raise _Refused("INVALID_PARAM_VALUE", "text must be t- followed by 1 to 28 of 0-9, A-Z, a-z, _, - or .")
        if body.get("account", "spot") != "spot":
            raise _Refused("INVALID_PARAM_VALUE", "invalid argument: account")
        side, order_type = body.get("side"), body.get("type", "limit")
        if side not in ("buy", "sell"):
            raise _Refused("INVALID_PARAM_VALUE", "invalid argument: side")
        if order_type not in ("limit", "market"):
            raise _Refused("INVALID_PARAM_VALUE", "invalid argument: type")
        # fok and poc are Gate's too; this fake's engine cannot do them, so it refuses them.
        time_in_force = body.get("time_in_force", "ioc" if order_type == "market" else "gtc")
        if time_in_force not in (("ioc",) if order_type == "market" else ("gtc", "ioc")):
            raise _Refused("INVALID_PARAM_VALUE", f"invalid argument: time_in_force {time_in_force}")
        size = finite_decimal(body.get("amount"))
        if size is None or size <= 0:
            raise _Refused("INVALID_PARAM_VALUE", "invalid argument: amount")
        last = self.state.prices[symbol]
        price, spend = None, None
        if order_type == "limit":
            price = finite_decimal(body.get("price"))
            if price is None or price <= 0:
                raise _Refused("INVALID_PARAM_VALUE", "invalid argument: price")
            if price % market.price_step:
                raise _Refused("INVALID_PRECISION", "Invalid precision")
        if order_type == "market" and side == "buy":  # the quote to spend
            if size % market.price_step:
                raise _Refused("INVALID_PRECISION", "Invalid precision")
            if size < market.min_cost:
                raise self._too_small(size, market.min_cost, market.quote)
            spend, amount = size, (size / last).quantize(market.amount_step, rounding=ROUND_DOWN)
        else:
            if size % market.amount_step:
                raise _Refused("INVALID_PRECISION", "Invalid precision")
            if size < market.min_amount:
                raise self._too_small(size, market.min_amount, market.base)
            if size * (price or last) < market.min_cost:
                raise self._too_small(size * (price or last), market.min_cost, market.quote)
            amount = size
        try:
            order = self.state.place(symbol, side, order_type, amount, price, text, self._new_order_id())
        except EngineError as exc:
            raise self._engine_refusal(exc, market) from None
        if time_in_force == "ioc" and order.status == "open":  # a limit ioc's rest (market ones: the engine's)
            self.state.cancel(order_id=order.id)
        self._sent[order.id] = _Sent(str(body["amount"]), time_in_force, spend)
        return order

    @staticmethod
    def _engine_refusal(exc: EngineError, market: FakeMarket) -> _Refused:
        if exc.kind == "insufficient_funds":
            return _Refused("BALANCE_NOT_ENOUGH", "Not enough balance")
        if exc.kind == "duplicate_order":
            # The engine's rule: Gate itself takes a second order with an open order's text, and
            # its look-ups by text then find the newer one.
            return _Refused("REPEATED_CREATION", str(exc))
        return _Refused("INVALID_PARAM_VALUE", str(exc))

    async def create_order(self, request: web.Request, body: Json) -> web.Response:
        """POST /spot/orders: the new order in full (Gate's default action_mode FULL)."""
        try:
            order = self._place(body)
        except _Refused as refused:
            return _error(refused.label, refused.message)
        return web.json_response(self._order_json(order), status=201)

    def _visible(self, order: FakeOrder, *, by_text: bool) -> bool:
        """Whether a look-up finds ``order``: a finished one only while ``closed_listed``; by its
        text an open one once ``listing_delay`` has passed, a finished one within ``text_lookup_window``."""
        if order.status != "open":
            if not self.state.closed_listed:
                return False
            if by_text:
                return time.time() - (order.closed_at or order.created_at) < self.text_lookup_window
        return not by_text or self.state.listed(order)

    def _one(self, request: web.Request) -> FakeOrder | web.Response:
        """The order ``{order_id}`` names on ``currency_pair`` (its id, or its ``t-`` text), or Gate's error."""
        order_id = request.match_info["order_id"]
        try:
            symbol = self._symbol(request.query.get("currency_pair"))
        except _Refused as refused:
            return _error(refused.label, refused.message)
        by_text = order_id.startswith("t-")
        order = self.state.find(client_order_id=order_id) if by_text else self.state.find(order_id=order_id)
        if order is None or order.symbol != symbol or not self._visible(order, by_text=by_text):
            if by_text:
                return _error("CLIENT_ID_NOT_FOUND", f"Order with client ID {order_id} not found", 404)
            return _error("ORDER_NOT_FOUND", "Order not found", 404)
        return order

    async def get_order(self, request: web.Request, body: Json) -> web.Response:
        """GET /spot/orders/{order_id}?currency_pair=: one order by its id or, while open, its text."""
        order = self._one(request)
        return order if isinstance(order, web.Response) else web.json_response(self._order_json(order))

    async def cancel_order(self, request: web.Request, body: Json) -> web.Response:
        """DELETE /spot/orders/{order_id}?currency_pair=: the canceled order in full."""
        order = self._one(request)
        if isinstance(order, web.Response):
            return order
        if order.status != "open":
            return _error("ORDER_NOT_FOUND", "Order not found", 404)
        self.state.cancel(order_id=order.id)
        return web.json_response(self._order_json(order))

    def _paged(self, rows: list[Json], request: web.Request) -> list[Json] | web.Response:
        """One ``page`` (from 1) of ``limit`` rows (``listing_page`` at most, and by default)."""
        query = request.query
        try:
            page = 1 if self.paging_ignored else int(query.get("page") or 1)
            limit = min(int(query.get("limit") or self.listing_page), self.listing_page)
        except ValueError:
            return _error("INVALID_PARAM_VALUE", "invalid argument: page or limit")
        if page < 1 or limit < 1:
            return _error("INVALID_PARAM_VALUE", "invalid argument: page or limit")
        return rows[(page - 1) * limit:page * limit]

    def _listed(self, order: FakeOrder) -> bool:
        if not self._visible(order, by_text=False) or not self.state.listed(order):
            return False
        # Gate keeps no canceled order that never traded: it drops out of the list after a while.
        return not (order.status == "canceled" and not order.filled
                    and time.time() - (order.closed_at or 0) > self.unfilled_cancel_retention)

    async def list_orders(self, request: web.Request, body: Json) -> web.Response:
        """GET /spot/orders?status=open|finished&currency_pair=: newest first, page by page, within
        ``from``/``to`` (creation time, seconds)."""
        query = request.query
        status = query.get("status")
        if status not in ("open", "finished"):
            return _error("INVALID_PARAM_VALUE", f"invalid argument: status {status}")
        pair = query.get("currency_pair")
        if pair is None and status == "open":
            return _error("MISSING_REQUIRED_PARAM", "Missing required parameter: currency_pair")
        try:
            symbol = self._symbol(pair) if pair is not None else None
            since = float(query.get("from") or 0)
            until = float("inf") if self.paging_ignored else float(query.get("to") or "inf")
        except _Refused as refused:
            return _error(refused.label, refused.message)
        except ValueError:
            return _error("INVALID_PARAM_VALUE", "invalid argument: from or to")
        side = query.get("side")
        rows = [
            self._order_json(o) for o in sorted(self.state.orders, key=lambda o: o.created_at, reverse=True)
            if (o.status == "open") == (status == "open") and self._listed(o)
            and (symbol is None or o.symbol == symbol) and (side is None or o.side == side)
            and since <= o.created_at <= until
        ]
        page = self._paged(rows, request)
        return page if isinstance(page, web.Response) else web.json_response(page)

    async def open_orders(self, request: web.Request, body: Json) -> web.Response:
        """GET /spot/open_orders: open orders grouped by pair, ``limit`` per pair per ``page``."""
        groups = []
        for symbol in self.state.markets:
            rows = [self._order_json(o) for o in sorted(self.state.orders, key=lambda o: o.created_at, reverse=True)
                    if o.symbol == symbol and o.status == "open" and self._listed(o)]
            page = self._paged(rows, request)
            if isinstance(page, web.Response):
                return page
            if rows:
                groups.append({"currency_pair": self.pair_id(symbol), "total": len(rows), "orders": page})
        return web.json_response(groups)

    def _trade_json(self, order: FakeOrder, fill: FakeFill) -> Json:
        return {
            "id": str(_TRADE_ID_BASE + fill.id), "create_time": str(int(fill.time)),
            "create_time_ms": f"{fill.time * 1000:.3f}", "currency_pair": self.pair_id(order.symbol),
            "side": order.side, "role": "taker", "amount": dec(fill.quantity), "price": dec(fill.price),
            "order_id": order.id, "fee": dec(fill.fee), "fee_currency": fill.fee_currency, "point_fee": "0",
            "gt_fee": "0", "amend_text": "-", "sequence_id": str(fill.id), "text": order.client_order_id or "apiv4",
        }

    async def my_trades(self, request: web.Request, body: Json) -> web.Response:
        """GET /spot/my_trades: the account's trades, newest first (``order_id`` needs ``currency_pair``)."""
        query = request.query
        pair, order_id = query.get("currency_pair"), query.get("order_id")
        if order_id is not None and pair is None:
            return _error("MISSING_REQUIRED_PARAM", "Missing required parameter: currency_pair")
        try:
            symbol = self._symbol(pair) if pair is not None else None
            limit = min(int(query.get("limit") or 100), 1000)
            page = int(query.get("page") or 1)
            since = float(query.get("from") or 0)
            until = float("inf") if self.paging_ignored else float(query.get("to") or "inf")
        except _Refused as refused:
            return _error(refused.label, refused.message)
        except ValueError:
            return _error("INVALID_PARAM_VALUE", "invalid argument: limit, page, from or to")
        trades = [
            (fill, order) for order in self.state.orders
            if (symbol is None or order.symbol == symbol) and (order_id is None or order.id == order_id)
            for fill in order.fills if since <= fill.time <= until
        ]
        trades.sort(key=lambda pair: pair[0].id, reverse=True)
        return web.json_response([self._trade_json(o, f) for f, o in trades[(page - 1) * limit:page * limit]])


@asynccontextmanager
async def start_fake_gate(
    state: ExchangeState | None = None,
    *,
    api_key: str = "gate-test-key-0123456789abcdef",
    secret: str = "gate-test-secret-0123456789abcdef0123456789abcdef",
    hang_seconds: float = 3.0,
) -> AsyncIterator[FakeGate]:
    """A running fake Gate.io API v4 (spot) on 127.0.0.1 (random port)."""
    fake = FakeGate(state or default_state("USDT", Decimal("0.002")), api_key, secret, hang_seconds)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
