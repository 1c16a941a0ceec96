"""A fake KuCoin spot REST API (``/api/v1|v2|v3/*``) good enough for ccxt's kucoin class: a classic
account, or (``high_frequency``) a high-frequency (HF) one.

Public symbols (v2), all tickers (with the fee rates ccxt's markets read), currencies (v3) and
time; the key's account mode (classic, not unified), whether it trades through the high-frequency
account, its margin symbols (none); the trading accounts' balances; placing, getting, listing and
canceling orders, and fills, in KuCoin's shapes (``{"code": "200000", "data": ...}``, string
numbers, millisecond ``createdAt``) and error codes. Contract markets (the futures host, which ccxt
also asks) are answered with none: this fake trades spot alone.

Classic account (the default; ``GET /api/v1/hf/accounts/opened`` answers false): balances under the
``trade`` account type; ``/api/v1/orders`` places, gets (by ``orderId``; by ``clientOid`` at
``/api/v1/order/client-order/{clientOid}`` while the order is active only), lists
(``status=active|done``, paged by ``currentPage``/``pageSize``) and cancels orders
(``isActive``/``cancelExist``), ``/api/v1/fills`` lists trades.

High-frequency account (``high_frequency``; settable after start until ccxt's first private call,
as ccxt asks ``GET /api/v1/hf/accounts/opened`` once, when it loads markets; here it answers true):
balances under the ``trade_hf`` account type (the ``trade`` one is empty). Orders at
``/api/v1/hf/orders``, each endpoint given the order's ``symbol`` (and finding orders of that symbol
alone): ``POST`` places one, answered ``{"orderId", "clientOid"}``; ``GET /hf/orders/{orderId}`` and
``GET /hf/orders/client-order/{clientOid}`` get one, active *or done* (the classic look-up by clientOid
finds active orders alone); ``GET /hf/orders/active`` lists the active ones (a plain list);
``GET /hf/orders/done`` the done ones (``{"lastId", "items"}``, newest first, ``limit`` 20 by default
(``listing_page``) and 100 at most, older pages by ``lastId``, the number the last page ended on, and
``startAt``/``endAt``, creation times in milliseconds, both inclusive; the classic ``pageSize`` is not
known there and ignored); ``DELETE /hf/orders/{orderId}`` cancels one, answered ``{"orderId"}``
(``DELETE /hf/orders/client-order/{clientOid}``: ``{"clientOid"}``); ``GET /api/v1/hf/fills`` lists
trades (``{"lastId", "items"}``). HF orders say ``active``, ``inOrderBook``, ``cancelExist``,
``remainSize``/``cancelledSize`` and ``lastUpdatedAt``. An HF account's orders are not at the classic
order endpoints (nor a classic account's at the HF ones): there the fake answers as to unknown paths
(404, recorded in ``unknown_paths``). The ``/hf/orders/sync`` variants (which ccxt uses only when
told to) are not served.

Private calls need ``KC-API-KEY`` (the configured key), ``KC-API-TIMESTAMP`` within 5 s,
``KC-API-SIGN`` (base64 HMAC-SHA256 over timestamp + method + path with query + body, checked)
and ``KC-API-PASSPHRASE``, which API keys of version 2 or 3 (``KC-API-KEY-VERSION``) send as the
base64 HMAC-SHA256 of the passphrase. In either mode a market order is sized by ``size`` (base) or
``funds`` (quote, converted at the last price) and is immediate-or-cancel in effect: its unfilled
rest is canceled at once. A ``clientOid`` (at most 40 characters) can be used once. The base class's
faults, ``closed_listed`` and ``listing_delay`` apply to both modes' endpoints alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

from tests.fakes.engine import EngineError, ExchangeState, FakeFill, FakeOrder, default_state
from tests.fakes.server import FakeExchangeServer, RecordedRequest, dec, finite_decimal, json_body_field

Json = dict[str, Any]
PrivateHandler = Callable[[web.Request, Json], Awaitable[web.Response]]

_OK = "200000"
_MAX_CLOCK_SKEW = 5.0  # seconds KuCoin allows between KC-API-TIMESTAMP and its own clock
_KEY_VERSIONS = ("2", "3")  # versions whose passphrase is sent HMAC-signed (ccxt sends 2)
_CLIENT_OID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_MAX_PAGE_SIZE = 500
_MIN_PAGE_SIZE = 10
_CLASSIC_PAGE = 50  # the classic listings' default pageSize
_CLASSIC_ORDERS = "/api/v1/orders"
_HF_ORDERS = "/api/v1/hf/orders"
_HF_DEFAULT_LIMIT = 20  # the HF done list's and fills' default ``limit``
_HF_MAX_LIMIT = 100
_HF_ORDER_NUMBER_BASE = 19_814_995_255_305  # the HF done list's ``lastId``: a number of KuCoin's, not the order id
_HF_FILL_NUMBER_BASE = 11_063_862_423_553  # the HF fills' ``id`` (and ``lastId``)
_HF_ACCOUNT_ID_BASE = 2_560_047_104  # HF accounts' ids are numbers (as strings)
_QUOTE_INCREMENT = Decimal("0.000001")  # the precision of ``funds``
_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "USDT": "Tether", "USDC": "USD Coin"}
_CHAINS = {"BTC": "btc", "ETH": "eth", "SOL": "sol", "USDT": "trx", "USDC": "eth"}
_NOT_FOUND = ("400100", "order not exist.")  # ccxt maps the message to OrderNotFound
_NOT_CANCELABLE = ("400100", "order_not_exist_or_not_allow_to_cancel")
# Engine refusals as (code, msg).
_REFUSALS = {
    "insufficient_funds": ("200004", "Balance insufficient!"),
    "invalid_order": ("400100", "Order size below the minimum requirement."),
    "unknown_symbol": ("400100", "Unsupported trading pair."),
    "duplicate_order": ("400100", "validation.createOrder.clientOidDuplicated"),
}


def _ok(data: Any) -> web.Response:
    return web.json_response({"code": _OK, "data": data})


def _error(code: str, message: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": message}, status=status)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)




def _sign(secret: str, payload: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeKucoin(FakeExchangeServer):
    order_path = _CLASSIC_ORDERS
    listing_page = _CLASSIC_PAGE  # KuCoin's default pageSize (the HF done list's default limit, 20, in HF mode)
    key_header = "KC-API-KEY"
    private_paths = (
        "/api/v1/accounts", "/api/v1/orders", "/api/v1/order/", "/api/v1/fills", "/api/v1/hf/",
        "/api/v1/isolated/", "/api/v3/margin/", "/api/ua/v1/",
    )
    taker_fee = "0.001"  # the tickers' takerFeeRate x takerCoefficient, which ccxt's markets read

    def __init__(
        self, state: ExchangeState, api_key: str, secret: str, passphrase: str, hang_seconds: float = 3.0,
        *, high_frequency: bool = False,
    ) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        state.market_ioc = True  # a market order's unfilled rest is canceled at once
        self.passphrase = passphrase
        self.uid = 165111215  # the account's uid, which the API key's info names
        self.other_api_keys: set[str] = set()  # more keys of the account (same secret and passphrase)
        self._symbol_by_id = {self.symbol_id(s): s for s in state.markets}
        self._funds: dict[str, Decimal] = {}  # each market order's funds, where it was sized by them
        self._high_frequency = False
        self.high_frequency = high_frequency
        self.unified = False  # a unified trading account: the account mode says so, nothing more

    @property
    def high_frequency(self) -> bool:
        """Whether the account is a high-frequency one (see the module's doc). Setting it also sets
        ``order_path`` (where ``drop_response_next`` strikes by default) and ``listing_page`` (the
        done list's default page) to the mode's: set a smaller page after the mode."""
        return self._high_frequency

    @high_frequency.setter
    def high_frequency(self, value: bool) -> None:
        self._high_frequency = value
        self.order_path = _HF_ORDERS if value else _CLASSIC_ORDERS
        self.listing_page = _HF_DEFAULT_LIMIT if value else _CLASSIC_PAGE

    @staticmethod
    def symbol_id(symbol: str) -> str:
        return symbol.replace("/", "-")

    def rate_limit_response(self) -> web.Response:
        return _error("429000", "Too many requests. System-level rate limit exceeded.", 429)

    def not_found_response(self, request: web.Request) -> web.Response:
        return _error("404000", "Url Not Found", 404)

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        return json_body_field(request, "clientOid")

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v1/timestamp", self.server_time)
        r.add_get("/api/v1/status", self.system_status)
        r.add_get("/api/v2/symbols", self.symbols)
        r.add_get("/api/v1/market/allTickers", self.all_tickers)
        r.add_get("/api/v3/currencies", self.currencies)
        r.add_get("/api/v1/contracts/active", self.contracts)
        # (method, path, handler, the account mode it serves: None for both)
        private: list[tuple[str, str, PrivateHandler, bool | None]] = [
            ("GET", "/api/ua/v1/account/mode", self.account_mode, None),
            ("GET", "/api/v1/hf/accounts/opened", self.hf_opened, None),
            ("GET", "/api/v3/margin/symbols", self.margin_symbols, None),
            ("GET", "/api/v1/isolated/symbols", self.isolated_symbols, None),
            ("GET", "/api/v1/accounts", self.accounts, None),
            ("GET", "/api/v1/user/api-key", self.api_key_info, None),
            ("POST", "/api/v1/orders", self.place_order, False),
            ("GET", "/api/v1/orders", self.list_orders, False),
            ("GET", "/api/v1/orders/{order_id}", self.get_order, False),
            ("DELETE", "/api/v1/orders/{order_id}", self.cancel_order, False),
            ("GET", "/api/v1/order/client-order/{client_oid}", self.get_order_by_client_oid, False),
            ("DELETE", "/api/v1/order/client-order/{client_oid}", self.cancel_order_by_client_oid, False),
            ("GET", "/api/v1/fills", self.fills, False),
            # Fixed paths before the ones with an id, which would match them.
            ("POST", "/api/v1/hf/orders", self.hf_place_order, True),
            ("GET", "/api/v1/hf/orders/active", self.hf_active_orders, True),
            ("GET", "/api/v1/hf/orders/done", self.hf_done_orders, True),
            ("GET", "/api/v1/hf/orders/client-order/{client_oid}", self.hf_get_order_by_client_oid, True),
            ("DELETE", "/api/v1/hf/orders/client-order/{client_oid}", self.hf_cancel_order_by_client_oid, True),
            ("GET", "/api/v1/hf/orders/{order_id}", self.hf_get_order, True),
            ("DELETE", "/api/v1/hf/orders/{order_id}", self.hf_cancel_order, True),
            ("GET", "/api/v1/hf/fills", self.hf_fills, True),
        ]
        for method, path, handler, mode in private:
            checked = self._private(handler)
            r.add_route(method, path, checked if mode is None else self._only_in_mode(mode, checked))

    def _only_in_mode(
        self, high_frequency: bool, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``handler`` on an account of that mode; elsewhere the path is unknown to the fake (a
        classic account's orders are not at the HF endpoints, nor an HF account's at the classic ones)."""

        async def in_mode(request: web.Request) -> web.Response:
            if self.high_frequency != high_frequency:
                raise web.HTTPNotFound()
            return await handler(request)

        return in_mode

    def _private(self, handler: PrivateHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def checked(request: web.Request) -> web.Response:
            headers = request.headers
            key, signature = headers.get("KC-API-KEY", ""), headers.get("KC-API-SIGN", "")
            stamp, passphrase = headers.get("KC-API-TIMESTAMP", ""), headers.get("KC-API-PASSPHRASE", "")
            if not (key and signature and stamp and passphrase):
                return _error("400001", "Please check the header of your request for KC-API-KEY, KC-API-SIGN, "
                                        "KC-API-TIMESTAMP, KC-API-PASSPHRASE", 401)
            if not stamp.isdigit() or abs(time.time() - int(stamp) / 1000) > _MAX_CLOCK_SKEW:
                return _error("400002", "KC-API-TIMESTAMP Invalid -- Time differs from server time by more "
                                        "than 5 seconds", 401)
            if self.reject_auth or key not in {self.api_key, *self.other_api_keys}:
                return _error("400003", "KC-API-KEY not exists", 401)
            if headers.get("KC-API-KEY-VERSION") not in _KEY_VERSIONS or passphrase != _sign(
                self.secret, self.passphrase or ""
            ):
                return _error("400004", "Invalid KC-API-PASSPHRASE", 401)
            text = await request.text()
            if signature != _sign(self.secret, stamp + request.method + request.raw_path + text):
                return _error("400005", "Invalid KC-API-SIGN", 401)
            params: Json = dict(request.query)
            if text:
                try:
                    body = json.loads(text)
                except ValueError:
                    return _error("400100", "Invalid JSON body")
                if not isinstance(body, dict):
                    return _error("400100", "Invalid JSON body")
                params.update(body)
            return await handler(request, params)

        return checked

    # ------------------------------------------------------------------ public
    async def server_time(self, request: web.Request) -> web.Response:
        return web.json_response({"code": _OK, "msg": "success", "data": _ms(time.time())})

    async def system_status(self, request: web.Request) -> web.Response:
        return _ok({"status": "open", "msg": ""})

    async def symbols(self, request: web.Request) -> web.Response:
        wanted = request.query.get("market")
        rows = []
        for symbol, m in self.state.markets.items():
            if wanted and wanted != m.quote + "S":  # KuCoin's trading areas: USDS, BTC, ALTS, ...
                continue
            rows.append({
                "symbol": self.symbol_id(symbol), "name": self.symbol_id(symbol), "baseCurrency": m.base,
                "quoteCurrency": m.quote, "feeCurrency": m.quote, "market": m.quote + "S",
                "baseMinSize": dec(m.min_amount), "quoteMinSize": dec(m.min_cost), "baseMaxSize": "10000000000",
                "quoteMaxSize": "99999999", "baseIncrement": dec(m.amount_step),
                "quoteIncrement": dec(_QUOTE_INCREMENT), "priceIncrement": dec(m.price_step),
                "priceLimitRate": "0.1", "minFunds": "0.1", "isMarginEnabled": False, "enableTrading": True,
                "feeCategory": 1, "makerFeeCoefficient": "1.00", "takerFeeCoefficient": "1.00", "st": False,
                "callauctionIsEnabled": False, "callauctionPriceFloor": None, "callauctionPriceCeiling": None,
                "callauctionFirstStageStartTime": None, "callauctionSecondStageStartTime": None,
                "callauctionThirdStageStartTime": None, "tradingStartTime": None,
            })
        return _ok(rows)

    async def all_tickers(self, request: web.Request) -> web.Response:
        rate = dec(self.state.fee_rate)
        rows = []
        for symbol, price in self.state.prices.items():
            p = dec(price)
            rows.append({
                "symbol": self.symbol_id(symbol), "symbolName": self.symbol_id(symbol), "buy": p,
                "bestBidSize": "1", "sell": p, "bestAskSize": "1", "changeRate": "0", "changePrice": "0",
                "high": p, "low": p, "vol": "100", "volValue": dec(price * 100), "last": p, "averagePrice": p,
                "takerFeeRate": rate, "makerFeeRate": rate, "takerCoefficient": "1", "makerCoefficient": "1",
            })
        return _ok({"time": _ms(time.time()), "ticker": rows})

    async def currencies(self, request: web.Request) -> web.Response:
        codes = {c for m in self.state.markets.values() for c in (m.base, m.quote)} | set(self.state.balances)
        rows = []
        for code in sorted(codes):
            chain = _CHAINS.get(code, code.lower())
            rows.append({
                "currency": code, "name": code, "fullName": _NAMES.get(code, code), "precision": 8,
                "confirms": None, "contractAddress": None, "isMarginEnabled": False, "isDebitEnabled": False,
                "chains": [{
                    "chainName": chain.upper(), "chainId": chain, "withdrawalMinSize": "0.001",
                    "depositMinSize": None, "withdrawFeeRate": "0", "withdrawalMinFee": "0.0001",
                    "isWithdrawEnabled": True, "isDepositEnabled": True, "confirms": 12, "preConfirms": 6,
                    "withdrawPrecision": 8, "maxWithdraw": None, "maxDeposit": None, "needTag": False,
                    "contractAddress": "",
                }],
            })
        return _ok(rows)

    async def contracts(self, request: web.Request) -> web.Response:
        """GET /api/v1/contracts/active (the futures host): none, this fake trades spot alone."""
        return _ok([])

    # ------------------------------------------------------------------ account
    async def account_mode(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/ua/v1/account/mode: a classic account (ccxt then uses the classic endpoints), or,
        with ``unified``, a unified one (whose own endpoints this fake does not serve)."""
        return _ok({"selfAccountMode": "UNIFIED" if self.unified else "CLASSIC"})

    def named_account(self) -> str | None:
        return str(self.uid)

    async def api_key_info(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/user/api-key: the key's own account (``uid``; a sub-account's own)."""
        return _ok({
            "remark": "rebalancer", "apiKey": request.headers["KC-API-KEY"], "apiVersion": 3,
            "permission": "General,Spot", "ipWhitelist": "", "createdAt": 1700000000000, "uid": self.uid,
            "isMaster": True,
        })

    async def hf_opened(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/hf/accounts/opened: whether the account is a high-frequency one (true: ccxt
        then trades through the HF endpoints; false: through the classic ones)."""
        return _ok(self.high_frequency)

    async def margin_symbols(self, request: web.Request, params: Json) -> web.Response:
        return _ok({"timestamp": _ms(time.time()), "items": []})

    async def isolated_symbols(self, request: web.Request, params: Json) -> web.Response:
        return _ok([])

    async def accounts(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/accounts: the trading account of each currency held: ``type=trade`` on a
        classic account, ``type=trade_hf`` (numeric ids) on a high-frequency one."""
        wanted_type, wanted_currency = params.get("type"), params.get("currency")
        if wanted_type not in (None, "main", "trade", "margin", "trade_hf", "isolated", "contract", "pool"):
            return _error("400100", "type not in the given range")
        held_in = "trade_hf" if self.high_frequency else "trade"
        rows = []
        for number, (currency, total) in enumerate(self.state.balances.items()):
            if wanted_type not in (None, held_in) or wanted_currency not in (None, currency):
                continue
            held = self.state.locked(currency)
            classic_id = f"{0x5BD6E9286D99522A52E458DE + number:024x}"
            account_id = str(_HF_ACCOUNT_ID_BASE + number) if self.high_frequency else classic_id
            rows.append({
                "id": account_id, "currency": currency, "type": held_in,
                "balance": dec(total), "available": dec(total - held), "holds": dec(held),
            })
        return _ok(rows)

    # ------------------------------------------------------------------ orders
    def _new_order_id(self) -> str:
        return f"{int(time.time()):08x}{self.state.next_number():016x}"  # 24 hex digits, as KuCoin's

    def _order_json(self, order: FakeOrder) -> Json:
        market = self.state.markets[order.symbol]
        funds = self._funds.get(order.id)
        return {
            "id": order.id, "symbol": self.symbol_id(order.symbol), "opType": "DEAL", "type": order.order_type,
            "side": order.side, "price": dec(order.price) if order.price is not None else "0",
            "size": "0" if funds is not None else dec(order.amount), "funds": dec(funds) if funds else "0",
            "dealFunds": dec(order.cost), "dealSize": dec(order.filled), "fee": dec(order.fee),
            "feeCurrency": market.quote, "stp": "", "stop": "", "stopTriggered": False, "stopPrice": "0",
            "timeInForce": "GTC", "postOnly": False, "hidden": False, "iceberg": False, "visibleSize": "0",
            "cancelAfter": 0, "channel": "API", "clientOid": order.client_order_id or "", "remark": "",
            "tags": "", "isActive": order.status == "open", "cancelExist": order.status == "canceled",
            "createdAt": _ms(order.created_at), "tradeType": "TRADE",
        }

    def _visible(self, order: FakeOrder, by_client_id: bool) -> bool:
        """Whether look-ups find the order: a done one only while ``closed_listed``; by client order
        id and in listings only once ``listing_delay`` has passed."""
        if order.status != "open" and not self.state.closed_listed:
            return False
        return not by_client_id or self.state.listed(order)

    async def place_order(self, request: web.Request, params: Json) -> web.Response:
        """POST /api/v1/orders: the answer names the order (orderId), no state."""
        try:
            order = self._place(params)
        except _Refused as refused:
            return _error(refused.code, refused.message)
        return _ok({"orderId": order.id})

    def _place(self, params: Json) -> FakeOrder:
        client_oid = params.get("clientOid")
        if not client_oid:
            raise _Refused("400100", "validation.createOrder.clientOidIsRequired")
        if not isinstance(client_oid, str) or not _CLIENT_OID.fullmatch(client_oid):
            raise _Refused("400100", "clientOid should be no more than 40 characters of letters, numbers, - and _")
        if self.orders_with_client_id(client_oid):  # unique among all the account's orders, not only open ones
            raise _Refused(*_REFUSALS["duplicate_order"])
        symbol = self._symbol_by_id.get(str(params.get("symbol", "")))
        if symbol is None:
            raise _Refused(*_REFUSALS["unknown_symbol"])
        market = self.state.markets[symbol]
        side, order_type = params.get("side"), params.get("type", "limit")
        if side not in ("buy", "sell"):
            raise _Refused("400100", "side not in the given range!")
        if order_type not in ("limit", "market"):
            raise _Refused("400100", "type not in the given range!")
        size, funds = finite_decimal(params.get("size")), finite_decimal(params.get("funds"))
        price = None
        if order_type == "limit":
            price = finite_decimal(params.get("price"))
            if price is None or price <= 0 or size is None:
                raise _Refused("400100", "validation.createOrder.priceAndSizeRequired")
            if price % market.price_step:
                raise _Refused("400100", "Price increment invalid.")
        elif (size is None) == (funds is None):
            raise _Refused("400100", "validation.createOrder.sizeOrFundsRequired")  # exactly one of them
        if funds is not None:
            if funds <= 0 or funds % _QUOTE_INCREMENT:
                raise _Refused("400100", "The amount increment is invalid.")
            if funds < market.min_cost:
                raise _Refused("600101", f"The order funds should more then {dec(market.min_cost)} {market.quote}.")
            amount = (funds / self.state.prices[symbol]).quantize(market.amount_step, rounding=ROUND_DOWN)
        else:
            assert size is not None
            if size <= 0 or size % market.amount_step:
                raise _Refused("400100", "Order size increment invalid.")
            if size * (price or self.state.prices[symbol]) < market.min_cost:
                raise _Refused("600101", f"The order funds should more then {dec(market.min_cost)} {market.quote}.")
            amount = size
        try:
            order = self.state.place(symbol, side, order_type, amount, price, client_oid, self._new_order_id())
        except EngineError as exc:
            raise _Refused(*_REFUSALS.get(exc.kind, _REFUSALS["invalid_order"])) from None
        if funds is not None:
            self._funds[order.id] = funds
        return order

    async def get_order(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/orders/{orderId}: any order of the account, active or done."""
        order = self.state.find(order_id=request.match_info["order_id"])
        if order is None or not self._visible(order, by_client_id=False):
            return _error(*_NOT_FOUND)
        return _ok(self._order_json(order))

    async def get_order_by_client_oid(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/order/client-order/{clientOid}: an *active* order only; one that is done
        (filled or canceled) is answered as not existing, as KuCoin's classic endpoint does."""
        order = self.state.find(client_order_id=request.match_info["client_oid"])
        if order is None or order.status != "open" or not self._visible(order, by_client_id=True):
            return _error(*_NOT_FOUND)
        return _ok(self._order_json(order))

    def _cancel(self, order: FakeOrder | None) -> FakeOrder:
        if order is None or order.status != "open" or not self._visible(order, by_client_id=False):
            raise _Refused(*_NOT_CANCELABLE)
        return self.state.cancel(order_id=order.id)

    async def cancel_order(self, request: web.Request, params: Json) -> web.Response:
        """DELETE /api/v1/orders/{orderId}: the canceled order's id alone."""
        try:
            order = self._cancel(self.state.find(order_id=request.match_info["order_id"]))
        except _Refused as refused:
            return _error(refused.code, refused.message)
        return _ok({"cancelledOrderIds": [order.id]})

    async def cancel_order_by_client_oid(self, request: web.Request, params: Json) -> web.Response:
        try:
            order = self._cancel(self.state.find(client_order_id=request.match_info["client_oid"]))
        except _Refused as refused:
            return _error(refused.code, refused.message)
        return _ok({"cancelledOrderId": order.id, "clientOid": order.client_order_id, "cancelledOcoOrderIds": None})

    @staticmethod
    def _page(params: Json, rows: list[Json], default_size: int) -> web.Response:
        """One page of ``rows`` in KuCoin's paged shape (``currentPage`` from 1)."""
        try:
            page = max(int(params.get("currentPage") or 1), 1)
            size = int(params["pageSize"]) if params.get("pageSize") else default_size
        except ValueError:
            return _error("400100", "currentPage and pageSize must be numbers")
        if size > _MAX_PAGE_SIZE:
            return _error("400100", f"pageSize should not greater than {_MAX_PAGE_SIZE}")
        if params.get("pageSize"):
            size = max(size, _MIN_PAGE_SIZE)  # a smaller pageSize asked for is raised to KuCoin's minimum
        return _ok({
            "currentPage": page, "pageSize": size, "totalNum": len(rows), "totalPage": -(-len(rows) // size),
            "items": rows[(page - 1) * size:page * size],
        })

    @staticmethod
    def _in_window(params: Json, millis: int) -> bool:
        start, end = int(params.get("startAt") or 0), int(params.get("endAt") or 0)
        return (not start or millis >= start) and (not end or millis <= end)

    async def list_orders(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/orders: the account's active or done (filled or canceled) orders, newest first,
        one page (``listing_page`` unless ``pageSize`` says otherwise)."""
        status = params.get("status")
        if status not in (None, "active", "done"):
            return _error("400100", "status not in the given range!")
        if params.get("tradeType", "TRADE") != "TRADE":
            return self._page(params, [], self.listing_page or 50)
        wanted = {k: params.get(k) for k in ("symbol", "side", "type")}
        rows = [
            self._order_json(order)
            for order in reversed(self.state.orders)
            if (status is None or (order.status == "open") == (status == "active"))
            and self._visible(order, by_client_id=True)
            and all(value in (None, "") or value == actual for value, actual in (
                (wanted["symbol"], self.symbol_id(order.symbol)), (wanted["side"], order.side),
                (wanted["type"], order.order_type),
            ))
            and self._in_window(params, _ms(order.created_at))
        ]
        return self._page(params, rows, self.listing_page or 50)

    def _fill_json(self, order: FakeOrder, fill: FakeFill) -> Json:
        return {
            "symbol": self.symbol_id(order.symbol), "tradeId": str(fill.id), "orderId": order.id,
            "counterOrderId": f"{fill.id:024x}", "side": order.side, "liquidity": "taker", "forceTaker": False,
            "price": dec(fill.price), "size": dec(fill.quantity), "funds": dec(fill.cost), "fee": dec(fill.fee),
            "feeRate": dec(self.state.fee_rate), "feeCurrency": fill.fee_currency, "stop": "",
            "tradeType": "TRADE", "type": order.order_type, "createdAt": _ms(fill.time),
        }

    async def fills(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/fills: the account's trades, newest first, paged."""
        order_id, symbol_id = params.get("orderId"), params.get("symbol")
        rows = [
            self._fill_json(order, fill)
            for order in self.state.orders
            if (not order_id or order.id == order_id) and (not symbol_id or self.symbol_id(order.symbol) == symbol_id)
            for fill in order.fills
            if self._in_window(params, _ms(fill.time))
        ]
        rows.sort(key=lambda row: int(row["tradeId"]), reverse=True)
        return self._page(params, rows, 50)


    # ------------------------------------------------------------------ high-frequency orders
    def _hf_symbol(self, params: Json) -> str:
        """The unified symbol of the ``symbol`` every HF order endpoint requires."""
        symbol_id = params.get("symbol")
        if not symbol_id:
            raise _Refused("400100", "symbol is required")
        symbol = self._symbol_by_id.get(str(symbol_id))
        if symbol is None:
            raise _Refused(*_REFUSALS["unknown_symbol"])
        return symbol

    def _hf_number(self, order: FakeOrder) -> int:
        """The order's number in the done list (its ``lastId``), in the order orders were placed."""
        return _HF_ORDER_NUMBER_BASE + self.state.orders.index(order)

    @staticmethod
    def _updated_at(order: FakeOrder) -> float:
        return max([order.created_at, order.closed_at or 0.0, *(fill.time for fill in order.fills)])

    def _hf_order_json(self, order: FakeOrder) -> Json:
        """An HF order as its details, the active and the done lists show it."""
        market = self.state.markets[order.symbol]
        funds = self._funds.get(order.id)
        price = order.price
        active, canceled = order.status == "open", order.status == "canceled"
        rest = order.amount - order.filled
        if funds is not None:  # a market order sized by what it spends: never active (ioc)
            order_funds, rest_funds = funds, funds - order.cost
        else:
            order_funds = price * order.amount if price is not None else Decimal(0)
            rest_funds = rest * price if price is not None else Decimal(0)
        return {
            "id": order.id, "clientOid": order.client_order_id or "", "symbol": self.symbol_id(order.symbol),
            "opType": "DEAL", "type": order.order_type, "side": order.side,
            "price": dec(price) if price is not None else "0", "size": "0" if funds is not None else dec(order.amount),
            "funds": dec(order_funds), "dealSize": dec(order.filled), "dealFunds": dec(order.cost),
            "remainSize": dec(rest) if active and funds is None else "0",
            "remainFunds": dec(rest_funds) if active else "0",
            "cancelledSize": dec(rest) if canceled and funds is None else "0",
            "cancelledFunds": dec(rest_funds) if canceled else "0",
            "fee": dec(order.fee), "feeCurrency": market.quote, "stp": None, "timeInForce": "GTC",
            "postOnly": False, "hidden": False, "iceberg": False, "visibleSize": "0", "cancelAfter": 0,
            "channel": "API", "remark": None, "tags": "", "cancelExist": canceled, "active": active,
            "inOrderBook": active, "createdAt": _ms(order.created_at), "lastUpdatedAt": _ms(self._updated_at(order)),
            "tradeType": "TRADE",
        }

    def _hf_order_of(self, symbol: str, order: FakeOrder | None, by_client_id: bool) -> FakeOrder:
        """The order an HF endpoint was asked for: one of that symbol that look-ups find."""
        if order is None or order.symbol != symbol or not self._visible(order, by_client_id=by_client_id):
            raise _Refused(*_NOT_FOUND)
        return order

    async def hf_place_order(self, request: web.Request, params: Json) -> web.Response:
        """POST /api/v1/hf/orders: the answer names the order (``orderId``, ``clientOid``), no state."""
        try:
            order = self._place(params)
        except _Refused as refused:
            return _error(refused.code, refused.message)
        return _ok({"orderId": order.id, "clientOid": order.client_order_id})

    async def hf_get_order(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/hf/orders/{orderId}?symbol=: an order of the symbol, active or done."""
        try:
            symbol = self._hf_symbol(params)
            order = self._hf_order_of(symbol, self.state.find(order_id=request.match_info["order_id"]), False)
        except _Refused as refused:
            return _error(refused.code, refused.message)
        return _ok(self._hf_order_json(order))

    async def hf_get_order_by_client_oid(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/hf/orders/client-order/{clientOid}?symbol=: the order sent with that
        clientOid, active or done (unlike the classic endpoint, which finds active orders alone)."""
        try:
            symbol = self._hf_symbol(params)
            found = self.state.find(client_order_id=request.match_info["client_oid"])
            order = self._hf_order_of(symbol, found, True)
        except _Refused as refused:
            return _error(refused.code, refused.message)
        return _ok(self._hf_order_json(order))

    def _hf_cancel(self, params: Json, found: FakeOrder | None) -> FakeOrder:
        """``found`` canceled, if it is an order of the request's ``symbol`` (``_cancel``'s refusals)."""
        symbol = self._hf_symbol(params)
        return self._cancel(found if found is not None and found.symbol == symbol else None)

    async def hf_cancel_order(self, request: web.Request, params: Json) -> web.Response:
        """DELETE /api/v1/hf/orders/{orderId}?symbol=: the canceled order's id alone."""
        try:
            order = self._hf_cancel(params, self.state.find(order_id=request.match_info["order_id"]))
        except _Refused as refused:
            return _error(refused.code, refused.message)
        return _ok({"orderId": order.id})

    async def hf_cancel_order_by_client_oid(self, request: web.Request, params: Json) -> web.Response:
        """DELETE /api/v1/hf/orders/client-order/{clientOid}?symbol=: the canceled order's clientOid alone."""
        try:
            order = self._hf_cancel(params, self.state.find(client_order_id=request.match_info["client_oid"]))
        except _Refused as refused:
            return _error(refused.code, refused.message)
        return _ok({"clientOid": order.client_order_id})

    async def hf_active_orders(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/hf/orders/active?symbol=: every active order of the symbol, a plain list, the
        latest updated first (no paging, no time window)."""
        try:
            symbol = self._hf_symbol(params)
        except _Refused as refused:
            return _error(refused.code, refused.message)
        rows = [
            self._hf_order_json(order)
            for order in sorted(self.state.orders, key=self._updated_at, reverse=True)
            if order.symbol == symbol and order.status == "open" and self._visible(order, by_client_id=True)
        ]
        return _ok(rows)

    @staticmethod
    def _hf_limit(params: Json, default: int) -> int:
        """The ``limit`` of an HF listing (``lastId`` paged): ``default`` when not sent, 1 to 100."""
        raw = params.get("limit")
        if raw in (None, ""):
            return default
        try:
            limit = int(raw)
        except ValueError:
            raise _Refused("400100", "limit must be a number") from None
        if not 1 <= limit <= _HF_MAX_LIMIT:
            raise _Refused("400100", f"limit should be between 1 and {_HF_MAX_LIMIT}")
        return limit

    @staticmethod
    def _last_id(params: Json) -> int | None:
        raw = params.get("lastId")
        if raw in (None, ""):
            return None
        try:
            return int(raw)
        except ValueError:
            raise _Refused("400100", "lastId must be a number") from None

    async def hf_done_orders(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/hf/orders/done?symbol=: the symbol's done (filled or canceled) orders, newest
        first, ``limit`` of them (``listing_page``, 20, unless asked; 100 at most), created between
        ``startAt`` and ``endAt`` (ms, both inclusive) and, with ``lastId``, older than the order that
        number names. The answer's ``lastId`` names the page's last order: the next page's ``lastId``.
        ``pageSize``/``currentPage`` (the classic listing's paging) are not known here: ignored."""
        try:
            symbol = self._hf_symbol(params)
            limit = self._hf_limit(params, self.listing_page or _HF_DEFAULT_LIMIT)
            last_id = self._last_id(params)
            start, end = int(params.get("startAt") or 0), int(params.get("endAt") or 0)
        except ValueError:
            return _error("400100", "startAt and endAt must be numbers")
        except _Refused as refused:
            return _error(refused.code, refused.message)
        wanted = {"side": params.get("side"), "type": params.get("type")}
        done = [
            order
            for order in reversed(self.state.orders)
            if order.symbol == symbol and order.status != "open" and self._visible(order, by_client_id=True)
            and (last_id is None or self._hf_number(order) < last_id)
            and wanted["side"] in (None, "", order.side) and wanted["type"] in (None, "", order.order_type)
            and (not start or _ms(order.created_at) >= start) and (not end or _ms(order.created_at) <= end)
        ][:limit]
        return _ok({
            "lastId": self._hf_number(done[-1]) if done else None,
            "items": [self._hf_order_json(order) for order in done],
        })

    def _hf_fill_json(self, order: FakeOrder, fill: FakeFill) -> Json:
        return {
            "id": _HF_FILL_NUMBER_BASE + fill.id, "symbol": self.symbol_id(order.symbol), "tradeId": str(fill.id),
            "orderId": order.id, "counterOrderId": f"{fill.id:024x}", "side": order.side, "liquidity": "taker",
            "forceTaker": False, "price": dec(fill.price), "size": dec(fill.quantity), "funds": dec(fill.cost),
            "fee": dec(fill.fee), "feeRate": dec(self.state.fee_rate), "feeCurrency": fill.fee_currency,
            "stop": "", "tradeType": "TRADE", "taxRate": "0", "tax": "0", "type": order.order_type,
            "createdAt": _ms(fill.time),
        }

    async def hf_fills(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/hf/fills?symbol=: the symbol's trades (those of ``orderId`` alone, if sent),
        newest first, ``limit`` of them (20 unless asked; 100 at most), paged by ``lastId`` (the
        trades' ``id``) and ``startAt``/``endAt`` (ms, both inclusive)."""
        try:
            symbol = self._hf_symbol(params)
            limit = self._hf_limit(params, _HF_DEFAULT_LIMIT)
            last_id = self._last_id(params)
        except _Refused as refused:
            return _error(refused.code, refused.message)
        order_id = params.get("orderId")
        rows = [
            self._hf_fill_json(order, fill)
            for order in self.state.orders
            if order.symbol == symbol and (not order_id or order.id == order_id)
            for fill in order.fills
            if self._in_window(params, _ms(fill.time))
        ]
        rows.sort(key=lambda row: int(row["id"]), reverse=True)
        rows = [row for row in rows if last_id is None or int(row["id"]) < last_id][:limit]
        return _ok({"lastId": rows[-1]["id"] if rows else None, "items": rows})


@asynccontextmanager
async def start_fake_kucoin(
    state: ExchangeState | None = None,
    *,
    api_key: str = "6502f1c7d4e8a90001kucoin0",
    secret: str = "kucoin-test-secret-0123-4567-89ab-cdef",
    passphrase: str = "kucoin-test-passphrase",
    hang_seconds: float = 3.0,
    high_frequency: bool = False,
) -> AsyncIterator[FakeKucoin]:
    """A running fake KuCoin on 127.0.0.1 (random port); KuCoin's API keys come with a passphrase.
    ``high_frequency``: the account is a high-frequency one (its orders at ``/api/v1/hf/*``)."""
    fake = FakeKucoin(
        state or default_state("USDT"), api_key, secret, passphrase, hang_seconds, high_frequency=high_frequency
    )
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
