"""A fake KuCoin spot REST API (classic account, ``/api/v1|v2|v3/*``) good enough for ccxt's kucoin class.

Public symbols (v2), all tickers (with the fee rates ccxt's markets read), currencies (v3) and
time; the key's account mode (classic, not unified), whether it trades through the high-frequency
account (no: the classic endpoints), its margin symbols (none); the trading accounts' balances;
placing, getting (by ``orderId``, or by ``clientOid`` while the order is active), listing
(``status=active|done``, paged by ``currentPage``/``pageSize``) and canceling orders, and fills, in
KuCoin's shapes (``{"code": "200000", "data": ...}``, string numbers, ``isActive``/``cancelExist``,
millisecond ``createdAt``) and error codes. Contract markets (the futures host, which ccxt also
asks) are answered with none: this fake trades spot alone.

Private calls need ``KC-API-KEY`` (the configured key), ``KC-API-TIMESTAMP`` within 5 s,
``KC-API-SIGN`` (base64 HMAC-SHA256 over timestamp + method + path with query + body, checked)
and ``KC-API-PASSPHRASE``, which API keys of version 2 or 3 (``KC-API-KEY-VERSION``) send as the
base64 HMAC-SHA256 of the passphrase. A market order is sized by ``size`` (base) or ``funds``
(quote, converted at the last price) and is immediate-or-cancel in effect: its unfilled rest is
canceled at once. A ``clientOid`` (at most 40 characters) can be used once.
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
    order_path = "/api/v1/orders"
    listing_page = 50  # KuCoin's default pageSize
    key_header = "KC-API-KEY"
    private_paths = (
        "/api/v1/accounts", "/api/v1/orders", "/api/v1/order/", "/api/v1/fills", "/api/v1/hf/",
        "/api/v1/isolated/", "/api/v3/margin/", "/api/ua/v1/",
    )
    taker_fee = "0.001"  # the tickers' takerFeeRate x takerCoefficient, which ccxt's markets read

    def __init__(
        self, state: ExchangeState, api_key: str, secret: str, passphrase: str, hang_seconds: float = 3.0
    ) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        state.market_ioc = True  # a market order's unfilled rest is canceled at once
        self.passphrase = passphrase
        self.uid = 165111215  # the account's uid, which the API key's info names
        self.other_api_keys: set[str] = set()  # more keys of the account (same secret and passphrase)
        self._symbol_by_id = {self.symbol_id(s): s for s in state.markets}
        self._funds: dict[str, Decimal] = {}  # each market order's funds, where it was sized by them

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
        private: list[tuple[str, str, PrivateHandler]] = [
            ("GET", "/api/ua/v1/account/mode", self.account_mode),
            ("GET", "/api/v1/hf/accounts/opened", self.hf_opened),
            ("GET", "/api/v3/margin/symbols", self.margin_symbols),
            ("GET", "/api/v1/isolated/symbols", self.isolated_symbols),
            ("GET", "/api/v1/accounts", self.accounts),
            ("POST", "/api/v1/orders", self.place_order),
            ("GET", "/api/v1/orders", self.list_orders),
            ("GET", "/api/v1/orders/{order_id}", self.get_order),
            ("DELETE", "/api/v1/orders/{order_id}", self.cancel_order),
            ("GET", "/api/v1/order/client-order/{client_oid}", self.get_order_by_client_oid),
            ("DELETE", "/api/v1/order/client-order/{client_oid}", self.cancel_order_by_client_oid),
            ("GET", "/api/v1/fills", self.fills),
            ("GET", "/api/v1/user/api-key", self.api_key_info),
        ]
        for method, path, handler in private:
            r.add_route(method, path, self._private(handler))

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
        """GET /api/ua/v1/account/mode: a classic account (ccxt then uses the classic endpoints)."""
        return _ok({"selfAccountMode": "CLASSIC"})

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
        """GET /api/v1/hf/accounts/opened: false, the account trades through the classic endpoints."""
        return _ok(False)

    async def margin_symbols(self, request: web.Request, params: Json) -> web.Response:
        return _ok({"timestamp": _ms(time.time()), "items": []})

    async def isolated_symbols(self, request: web.Request, params: Json) -> web.Response:
        return _ok([])

    async def accounts(self, request: web.Request, params: Json) -> web.Response:
        """GET /api/v1/accounts: the trading account of each currency held (``type=trade``)."""
        wanted_type, wanted_currency = params.get("type"), params.get("currency")
        if wanted_type not in (None, "main", "trade", "margin", "trade_hf", "isolated", "contract", "pool"):
            return _error("400100", "type not in the given range")
        rows = []
        for number, (currency, total) in enumerate(self.state.balances.items()):
            if wanted_type not in (None, "trade") or wanted_currency not in (None, currency):
                continue
            held = self.state.locked(currency)
            rows.append({
                "id": f"{0x5BD6E9286D99522A52E458DE + number:024x}", "currency": currency, "type": "trade",
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


@asynccontextmanager
async def start_fake_kucoin(
    state: ExchangeState | None = None,
    *,
    api_key: str = "6502f1c7d4e8a90001kucoin0",
    secret: str = "kucoin-test-secret-0123-4567-89ab-cdef",
    passphrase: str = "kucoin-test-passphrase",
    hang_seconds: float = 3.0,
) -> AsyncIterator[FakeKucoin]:
    """A running fake KuCoin on 127.0.0.1 (random port); KuCoin's API keys come with a passphrase."""
    fake = FakeKucoin(state or default_state("USDT"), api_key, secret, passphrase, hang_seconds)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
