"""A fake Bitget REST API v2 (spot, classic account) good enough for ccxt's bitget class.

Public: server time, spot symbols, coins, tickers, and the margin and contract listings ccxt's
``load_markets`` also reads (answered empty: this fake trades spot alone). Private: spot assets;
placing, looking up (by ``orderId`` or ``clientOid``), listing (unfilled and history orders, one
page each, ``idLessThan`` paging) and canceling orders; fills. The v3 (unified account) probe ccxt
makes once is refused with 40084, as Bitget refuses it for a classic account. Answers use Bitget's
``{"code": "00000", "msg": "success", "requestTime", "data"}`` envelope, string numbers and error
codes. Private calls need ``ACCESS-KEY`` (the configured key), ``ACCESS-PASSPHRASE`` (the key's
passphrase), an ``ACCESS-TIMESTAMP`` within 30 s and an ``ACCESS-SIGN`` over timestamp + method +
path (+ ``?`` + query) + body with the secret. A spot market buy's ``size`` is the quote to spend
(Bitget's rule); market orders are immediate-or-cancel in effect. A limit order's ``force`` must be
gtc or ioc here (post_only and fok are not modelled).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes.engine import EngineError, ExchangeState, FakeFill, FakeMarket, FakeOrder, default_state
from tests.fakes.server import FakeExchangeServer, RecordedRequest, dec, finite_decimal, json_body_field

Params = dict[str, str]
PrivateHandler = Callable[[Params], Awaitable[web.Response]]

_MAX_CLOCK_SKEW = 30.0  # seconds Bitget allows between ACCESS-TIMESTAMP and its own clock
# Bitget's clientOid: up to 50 characters; letters, digits and the separators seen in its examples.
_CLIENT_OID = re.compile(r"^[A-Za-z0-9_#:.\-]{1,50}$")
_QUOTE_PRECISION = Decimal("0.00000001")
_ORDER_ID_BASE = 1_200_000_000_000_000_000  # Bitget's order ids are 19-digit numbers
_PRODUCT_TYPES = frozenset(
    {"USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES", "SUSDT-FUTURES", "SCOIN-FUTURES", "SUSDC-FUTURES"}
)
_CHAINS = {"BTC": "BTC", "ETH": "ERC20", "SOL": "SOL", "USDT": "TRC20", "USDC": "ERC20"}
_STATUS = {"closed": "filled", "canceled": "cancelled"}
# Engine refusals as Bitget's (code, msg); ccxt maps 43012 to InsufficientFunds.
_ERRORS = {
    "insufficient_funds": ("43012", "Insufficient balance"),
    "invalid_order": ("43006", "The order amount is less than the minimum transaction amount"),
    "unknown_symbol": ("40034", "Parameter does not exist"),
    "duplicate_order": ("40786", "Duplicate clientOid"),
}
_PARAM_ERROR = "40017"  # "Parameter verification failed": ccxt's BadRequest


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def _reply(data: Any, code: str = "00000", message: str = "success", status: int = 200) -> web.Response:
    return web.json_response(
        {"code": code, "msg": message, "requestTime": int(time.time() * 1000), "data": data}, status=status
    )


def _ok(data: Any) -> web.Response:
    return _reply(data)


def _error(code: str, message: str, status: int = 400) -> web.Response:
    return _reply(None, code, message, status)




def _places(step: Decimal) -> str:
    """Bitget states precisions as decimal places (0.01 -> "2")."""
    return str(max(0, -int(step.normalize().as_tuple().exponent)))


def _int_param(params: Params, name: str) -> int | None:
    """An integer query parameter; ValueError when it is not one."""
    value = params.get(name)
    return int(value) if value else None


def _window(params: Params) -> tuple[int | None, int | None, int | None]:
    """A listing's ``startTime``, ``endTime`` (ms) and ``idLessThan`` (the previous page's last id)."""
    return _int_param(params, "startTime"), _int_param(params, "endTime"), _int_param(params, "idLessThan")


class FakeBitget(FakeExchangeServer):
    order_path = "/api/v2/spot/trade/place-order"
    listing_page = 100  # Bitget's default (and largest) ``limit`` of its order listings
    key_header = "ACCESS-KEY"
    private_paths = ("/api/v2/spot/account/", "/api/v2/spot/trade/", "/api/v3/")
    taker_fee = "0.001"  # the symbols' takerFeeRate (the state's fee rate), which ccxt reads
    passphrase: str | None = "bitget-test-passphrase"

    def __init__(
        self, state: ExchangeState, api_key: str, secret: str, passphrase: str, hang_seconds: float = 3.0
    ) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        state.market_ioc = True  # a spot market order's unfilled rest is canceled at once
        self.passphrase = passphrase
        self._symbol_by_id = {self.symbol_id(s): s for s in state.markets}
        self.uid = 6130000001  # the account's userId, which orders and the account info name
        self.other_api_keys: set[str] = set()  # more keys of the account (same secret and passphrase)
        # Each order's ``size`` as sent: the quote to spend for a market buy, the base amount otherwise.
        self._sizes: dict[str, str] = {}

    @staticmethod
    def symbol_id(symbol: str) -> str:
        return symbol.replace("/", "")

    def rate_limit_response(self) -> web.Response:
        return _error("429", "Too Many Requests", 429)

    def not_found_response(self, request: web.Request) -> web.Response:
        return _error("40404", "Request URL NOT FOUND", 404)

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        return json_body_field(request, "clientOid")

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v2/public/time", self.server_time)
        r.add_get("/api/v2/spot/public/symbols", self.symbols)
        r.add_get("/api/v2/spot/public/coins", self.coins)
        r.add_get("/api/v2/spot/market/tickers", self.tickers)
        r.add_get("/api/v2/margin/currencies", self.margin_currencies)
        r.add_get("/api/v2/mix/market/contracts", self.contracts)
        private_get: dict[str, PrivateHandler] = {
            "/api/v3/account/settings": self.uta_settings,
            "/api/v2/spot/account/assets": self.assets,
            "/api/v2/spot/trade/orderInfo": self.order_info,
            "/api/v2/spot/trade/unfilled-orders": self.unfilled_orders,
            "/api/v2/spot/trade/history-orders": self.history_orders,
            "/api/v2/spot/trade/fills": self.fills,
            "/api/v2/spot/account/info": self.account_info,
        }
        private_post: dict[str, PrivateHandler] = {
            "/api/v2/spot/trade/place-order": self.place_order,
            "/api/v2/spot/trade/cancel-order": self.cancel_order,
        }
        for path, handler in private_get.items():
            r.add_get(path, self._private(handler))
        for path, handler in private_post.items():
            r.add_post(path, self._private(handler))

    def _refusal(self, request: web.Request, body: str) -> web.Response | None:
        """Bitget's answer to a request whose credentials or signature it refuses; None if it takes them."""
        headers = request.headers
        key, sign, stamp, phrase = (
            headers.get(h, "") for h in ("ACCESS-KEY", "ACCESS-SIGN", "ACCESS-TIMESTAMP", "ACCESS-PASSPHRASE")
        )
        if not key:
            return _error("40001", "ACCESS_KEY cannot be empty")
        if not sign:
            return _error("40003", "Signature cannot be empty")
        if not stamp:
            return _error("40005", "Invalid ACCESS_TIMESTAMP")
        if not phrase:
            return _error("40011", "ACCESS_PASSPHRASE cannot be empty")
        if self.reject_auth or key not in {self.api_key, *self.other_api_keys}:
            return _error("40037", "Apikey does not exist")
        if phrase != self.passphrase:
            return _error("40012", "apikey/password is incorrect")
        if not stamp.isdigit():
            return _error("40005", "Invalid ACCESS_TIMESTAMP")
        if abs(time.time() - int(stamp) / 1000) > _MAX_CLOCK_SKEW:
            return _error("40008", "Request timestamp expired")
        # Bitget signs the query as sent, but not percent-encoded.
        query = unquote(request.rel_url.raw_query_string)
        message = stamp + request.method + request.path + (f"?{query}" if query else "") + body
        expected = base64.b64encode(hmac.new(self.secret.encode(), message.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected.decode(), sign):
            return _error("40009", "sign signature error")
        return None

    def _private(self, handler: PrivateHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def checked(request: web.Request) -> web.Response:
            body = await request.text() if request.method == "POST" else ""
            refused = self._refusal(request, body)
            if refused is not None:
                return refused
            params = dict(request.query)
            if request.method == "POST":
                try:
                    sent = json.loads(body or "{}")
                except ValueError:
                    return _error(_PARAM_ERROR, "Parameter verification failed")
                if not isinstance(sent, dict):
                    return _error(_PARAM_ERROR, "Parameter verification failed")
                params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in sent.items()})
            try:
                return await handler(params)
            except ValueError:  # a number parameter that is not one
                return _error(_PARAM_ERROR, "Parameter verification failed")

        return checked

    # ------------------------------------------------------------------ public
    async def server_time(self, request: web.Request) -> web.Response:
        return _ok({"serverTime": _ms(time.time())})

    def _symbol_json(self, symbol: str, m: FakeMarket) -> dict[str, Any]:
        return {
            "symbol": self.symbol_id(symbol), "baseCoin": m.base, "quoteCoin": m.quote,
            "minTradeAmount": dec(m.min_amount), "maxTradeAmount": "900000000",
            "takerFeeRate": dec(self.state.fee_rate), "makerFeeRate": dec(self.state.fee_rate),
            "pricePrecision": _places(m.price_step), "quantityPrecision": _places(m.amount_step),
            "quotePrecision": _places(_QUOTE_PRECISION), "status": "online", "minTradeUSDT": dec(m.min_cost),
            "buyLimitPriceRatio": "0.05", "sellLimitPriceRatio": "0.05", "areaSymbol": "no",
            "orderQuantity": "200", "openTime": "1532454360000", "offTime": "",
        }

    async def symbols(self, request: web.Request) -> web.Response:
        wanted = request.query.get("symbol")
        if wanted and wanted not in self._symbol_by_id:
            return _error(*_ERRORS["unknown_symbol"])
        return _ok([
            self._symbol_json(s, m) for s, m in self.state.markets.items() if not wanted or wanted == self.symbol_id(s)
        ])

    async def coins(self, request: web.Request) -> web.Response:
        codes = {c for m in self.state.markets.values() for c in (m.base, m.quote)} | set(self.state.balances)
        wanted = request.query.get("coin")
        rows = []
        for number, coin in enumerate(sorted(codes), start=1):
            if wanted and wanted != coin:
                continue
            rows.append({"coinId": str(number), "coin": coin, "transfer": "true", "areaCoin": "no", "chains": [{
                "chain": _CHAINS.get(coin, coin), "needTag": "false", "withdrawable": "true", "rechargeable": "true",
                "withdrawFee": "0.0001", "extraWithdrawFee": "0", "depositConfirm": "12", "withdrawConfirm": "64",
                "minDepositAmount": "0.0001", "minWithdrawAmount": "0.001", "browserUrl": "", "contractAddress": "",
                "withdrawStep": "0", "withdrawMinScale": "8", "congestion": "normal",
            }]})
        return _ok(rows)

    async def tickers(self, request: web.Request) -> web.Response:
        wanted = request.query.get("symbol")
        if wanted and wanted not in self._symbol_by_id:
            return _error(*_ERRORS["unknown_symbol"])
        now = _ms(time.time())
        rows = []
        for symbol, price in self.state.prices.items():
            if wanted and wanted != self.symbol_id(symbol):
                continue
            p = dec(price)
            rows.append({
                "symbol": self.symbol_id(symbol), "high24h": p, "open": p, "low24h": p, "lastPr": p,
                "quoteVolume": dec(price * 100), "baseVolume": "100", "usdtVolume": dec(price * 100),
                "bidPr": p, "askPr": p, "bidSz": "1", "askSz": "1", "openUtc": p, "ts": now,
                "changeUtc24h": "0", "change24h": "0",
            })
        return _ok(rows)

    async def margin_currencies(self, request: web.Request) -> web.Response:
        return _ok([])  # no margin trading on this account's pairs

    async def contracts(self, request: web.Request) -> web.Response:
        if request.query.get("productType") not in _PRODUCT_TYPES:
            return _error(_PARAM_ERROR, "Parameter verification failed")
        return _ok([])  # spot only

    # ------------------------------------------------------------------ account
    async def uta_settings(self, params: Params) -> web.Response:
        """GET /api/v3/account/settings: ccxt's probe for a unified account; this one is classic."""
        return _error(
            "40084", "You are in Classic Account mode, and the Unified Account API is not supported at this time"
        )

    def named_account(self) -> str | None:
        return str(self.uid)

    async def account_info(self, params: Params) -> web.Response:
        """GET /api/v2/spot/account/info: the key's own account (``userId``; ``parentId`` would be
        a sub-account's master)."""
        return _ok({
            "userId": str(self.uid), "inviterId": "", "channelCode": "", "channel": "", "ips": "",
            "authorities": ["stor", "strr"], "parentId": 0, "traderType": "", "regisTime": "1700000000000",
        })

    async def assets(self, params: Params) -> web.Response:
        """GET /api/v2/spot/account/assets: ``frozen`` is what open orders hold."""
        wanted, asset_type = params.get("coin"), params.get("assetType", "hold_only")
        if asset_type not in ("hold_only", "all"):
            return _error(_PARAM_ERROR, "Parameter verification failed")
        now = _ms(time.time())
        rows = []
        for coin, total in self.state.balances.items():
            if (wanted and wanted != coin) or (asset_type == "hold_only" and total == 0):
                continue
            frozen = self.state.locked(coin)
            rows.append({
                "coin": coin, "available": dec(total - frozen), "frozen": dec(frozen), "locked": "0",
                "limitAvailable": "0", "uTime": now,
            })
        return _ok(rows)

    # ------------------------------------------------------------------ orders
    def _status(self, order: FakeOrder) -> str:
        if order.status == "open":
            return "partially_filled" if order.filled else "live"
        return _STATUS[order.status]

    def _fee_detail(self, order: FakeOrder) -> str:
        """An order's fees as Bitget sends them: a JSON text, negative amounts per fee coin."""
        coin = order.fills[0].fee_currency
        charged = float(-order.fee)
        return json.dumps({
            "newFees": {"c": 0, "d": 0, "deduction": False, "r": charged, "t": charged, "totalDeductionFee": 0},
            coin: {"deduction": False, "feeCoinCode": coin, "totalDeductionFee": 0, "totalFee": charged},
        })

    def _order_json(self, order: FakeOrder, *, unfilled: bool = False) -> dict[str, Any]:
        """An order as orderInfo and history-orders show it; as unfilled-orders does (``priceAvg``
        the limit price, ``basePrice`` the average fill price, no fees) when ``unfilled``."""
        market = self.state.markets[order.symbol]
        limit_price = dec(order.price) if order.price is not None else "0"
        average = dec(order.average) if order.average is not None else "0"
        updated = order.closed_at or (order.fills[-1].time if order.fills else order.created_at)
        row: dict[str, Any] = {
            "userId": str(self.uid), "symbol": self.symbol_id(order.symbol), "orderId": order.id,
            "clientOid": order.client_order_id or "", "size": self._sizes.get(order.id, dec(order.amount)),
            "orderType": order.order_type, "side": order.side, "status": self._status(order),
            "baseVolume": dec(order.filled), "quoteVolume": dec(order.cost), "enterPointSource": "API",
            "orderSource": "market" if order.order_type == "market" else "normal",
            "tpslType": "normal", "triggerPrice": None, "cTime": _ms(order.created_at), "uTime": _ms(updated),
        }
        if unfilled:
            return {**row, "priceAvg": limit_price, "basePrice": average}
        if order.fills:
            row["feeDetail"] = self._fee_detail(order)
        return {
            **row, "price": limit_price, "priceAvg": average, "cancelReason": "",
            "baseCoin": market.base, "quoteCoin": market.quote,
        }

    def _place_checked(self, params: Params) -> FakeOrder | web.Response:
        symbol = self._symbol_by_id.get(params.get("symbol", ""))
        if symbol is None:
            return _error(*_ERRORS["unknown_symbol"])
        market = self.state.markets[symbol]
        side, order_type = params.get("side"), params.get("orderType")
        if side not in ("buy", "sell") or order_type not in ("limit", "market"):
            return _error(_PARAM_ERROR, "Parameter verification failed")
        force = params.get("force", "").lower()
        if order_type == "limit" and force not in ("gtc", "ioc"):
            return _error(_PARAM_ERROR, "Parameter verification failed")
        client_oid = params.get("clientOid") or None
        if client_oid is not None:
            if not _CLIENT_OID.fullmatch(client_oid):
                return _error(_PARAM_ERROR, "Parameter verification failed")
            if self.orders_with_client_id(client_oid):  # a clientOid is taken once, whatever became of its order
                return _error(*_ERRORS["duplicate_order"])
        size = finite_decimal(params.get("size"))
        if size is None or size <= 0:
            return _error(_PARAM_ERROR, "Parameter verification failed")
        price = None
        if order_type == "limit":
            price = finite_decimal(params.get("price"))
            if price is None or price <= 0:
                return _error(_PARAM_ERROR, "Parameter verification failed")
            if price % market.price_step:
                return _error("41103", "param price scale error error")
        last = self.state.prices[symbol]
        if order_type == "market" and side == "buy":  # the quote to spend
            if size % _QUOTE_PRECISION:
                return _error("40808", f"Parameter verification exception size checkBDScale error value={size} "
                                       f"checkScale={_places(_QUOTE_PRECISION)}")
            cost, amount = size, (size / last).quantize(market.amount_step, rounding=ROUND_DOWN)
        else:
            if size % market.amount_step:
                return _error("40808", f"Parameter verification exception size checkBDScale error value={size} "
                                       f"checkScale={_places(market.amount_step)}")
            cost, amount = size * (price or last), size
        if cost < market.min_cost:
            return _error("45110", f"less than the minimum amount {dec(market.min_cost)} {market.quote}")
        order_id = str(_ORDER_ID_BASE + self.state.next_number())
        try:
            order = self.state.place(symbol, side, order_type, amount, price, client_oid, order_id)
        except EngineError as exc:
            return _error(*_ERRORS.get(exc.kind, (_PARAM_ERROR, "Parameter verification failed")))
        if force == "ioc" and order.status == "open":
            self.state.cancel(order_id=order.id)
        self._sizes[order.id] = params["size"]
        return order

    async def place_order(self, params: Params) -> web.Response:
        """POST /api/v2/spot/trade/place-order: answers the order's ids only."""
        placed = self._place_checked(params)
        if isinstance(placed, web.Response):
            return placed
        return _ok({"orderId": placed.id, "clientOid": placed.client_order_id or ""})

    def _visible(self, order: FakeOrder, by_client_id: bool) -> bool:
        """Whether look-ups find the order: closed ones only while ``closed_listed``; by client
        order id (and in listings) only once ``listing_delay`` has passed."""
        if order.status != "open" and not self.state.closed_listed:
            return False
        return not by_client_id or self.state.listed(order)

    async def order_info(self, params: Params) -> web.Response:
        """GET /api/v2/spot/trade/orderInfo (orderId wins over clientOid): an unknown order is an
        empty list, not an error."""
        order_id, client_oid = params.get("orderId") or None, params.get("clientOid") or None
        if order_id is None and client_oid is None:
            return _error(_PARAM_ERROR, "Parameter verification failed")
        order = self.state.find(order_id=order_id) if order_id else self.state.find(client_order_id=client_oid)
        if order is None or not self._visible(order, by_client_id=order_id is None):
            return _ok([])
        return _ok([self._order_json(order)])

    def _page(self, orders: Iterable[FakeOrder], params: Params) -> list[FakeOrder]:
        """One page of a listing, newest first: ``symbol``, ``orderId``, ``startTime``/``endTime``
        and ``idLessThan`` (the previous page's last orderId) filter; ``limit`` caps it at 100."""
        wanted, only_id = params.get("symbol"), params.get("orderId")
        start, end, below = _window(params)
        limit = min(_int_param(params, "limit") or self.listing_page, 100)
        chosen = [
            o for o in orders
            if self._visible(o, by_client_id=True)
            and (not wanted or self.symbol_id(o.symbol) == wanted)
            and (not only_id or o.id == only_id)
            and (start is None or o.created_at * 1000 >= start)
            and (end is None or o.created_at * 1000 <= end)
            and (below is None or int(o.id) < below)
        ]
        return sorted(chosen, key=lambda o: int(o.id), reverse=True)[:limit]

    async def unfilled_orders(self, params: Params) -> web.Response:
        """GET /api/v2/spot/trade/unfilled-orders: live and partially filled orders."""
        page = self._page((o for o in self.state.orders if o.status == "open"), params)
        return _ok([self._order_json(o, unfilled=True) for o in page])

    async def history_orders(self, params: Params) -> web.Response:
        """GET /api/v2/spot/trade/history-orders: filled and cancelled orders."""
        page = self._page((o for o in self.state.orders if o.status != "open"), params)
        return _ok([self._order_json(o) for o in page])

    async def cancel_order(self, params: Params) -> web.Response:
        """POST /api/v2/spot/trade/cancel-order (by orderId or clientOid): answers the ids only."""
        symbol = params.get("symbol")
        if not symbol:
            return _error("40019", "Parameter symbol cannot be empty")
        order_id, client_oid = params.get("orderId") or None, params.get("clientOid") or None
        if order_id is None and client_oid is None:
            return _error(_PARAM_ERROR, "Parameter verification failed")
        order = self.state.find(order_id=order_id) if order_id else self.state.find(client_order_id=client_oid)
        if order is None or order.status != "open" or self.symbol_id(order.symbol) != symbol:
            return _error("43001", "The order does not exist")
        self.state.cancel(order_id=order.id)
        return _ok({"orderId": order.id, "clientOid": order.client_order_id or ""})

    def _fill_json(self, order: FakeOrder, fill: FakeFill) -> dict[str, Any]:
        return {
            "userId": str(self.uid), "symbol": self.symbol_id(order.symbol), "orderId": order.id,
            "tradeId": str(fill.id), "orderType": order.order_type, "side": order.side,
            "priceAvg": dec(fill.price), "size": dec(fill.quantity), "amount": dec(fill.cost),
            "feeDetail": {
                "deduction": "no", "feeCoin": fill.fee_currency, "totalDeductionFee": "",
                "totalFee": dec(-fill.fee),
            },
            "tradeScope": "taker", "cTime": _ms(fill.time), "uTime": _ms(fill.time),
        }

    async def fills(self, params: Params) -> web.Response:
        """GET /api/v2/spot/trade/fills: the account's trades of one symbol, newest first; fees are
        the engine's (in the quote currency)."""
        wanted = params.get("symbol")
        if not wanted:
            return _error("40019", "Parameter symbol cannot be empty")
        only_id = params.get("orderId")
        start, end, below = _window(params)
        limit = min(_int_param(params, "limit") or 100, 100)
        rows = [
            (fill.id, self._fill_json(order, fill))
            for order in self.state.orders
            if self.symbol_id(order.symbol) == wanted and (not only_id or order.id == only_id)
            for fill in order.fills
            if (start is None or fill.time * 1000 >= start) and (end is None or fill.time * 1000 <= end)
            and (below is None or fill.id < below)
        ]
        rows.sort(key=lambda row: row[0], reverse=True)
        return _ok([row for _, row in rows[:limit]])


@asynccontextmanager
async def start_fake_bitget(
    state: ExchangeState | None = None,
    *,
    api_key: str = "bg_test_key_0123456789abcdef",
    secret: str = "bitget-test-secret-fedcba9876543210",
    passphrase: str = FakeBitget.passphrase or "",
    hang_seconds: float = 3.0,
) -> AsyncIterator[FakeBitget]:
    """A running fake Bitget spot API (classic account) on 127.0.0.1 (random port)."""
    fake = FakeBitget(state or default_state("USDT"), api_key, secret, passphrase, hang_seconds)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
