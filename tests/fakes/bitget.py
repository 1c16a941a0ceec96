"""A fake Bitget REST API good enough for ccxt's bitget class: a classic account (v2 spot), or
(``unified``) a unified trading account (UTA, v3).

Public: server time, spot symbols, coins, tickers, and the margin and contract listings ccxt's
``load_markets`` also reads (answered empty: this fake trades spot alone); the v3 instruments and
tickers by ``category`` (``SPOT``; the futures and margin categories answered empty). Answers use
Bitget's ``{"code": "00000", "msg": "success", "requestTime", "data"}`` envelope, string numbers and
error codes. Private calls need ``ACCESS-KEY`` (the configured key), ``ACCESS-PASSPHRASE`` (the key's
passphrase), an ``ACCESS-TIMESTAMP`` within 30 s and an ``ACCESS-SIGN`` over timestamp + method +
path (+ ``?`` + query) + body with the secret.

Classic account (the default): spot assets; placing, looking up (by ``orderId`` or ``clientOid``:
an unknown order is an empty list), listing (unfilled and history orders, one page each,
``idLessThan`` paging) and canceling orders; fills. A spot market buy's ``size`` is the quote to
spend (Bitget's rule). A limit order's ``force`` must be gtc or ioc here (post_only and fok are not
modelled). The v3 (unified account) endpoints refuse the key with 40084, as Bitget does for a
classic account: ccxt's probe of the account mode (``GET /api/v3/account/settings``, made once per
client, when it loads markets or at its first private call) takes the account for a classic one.

Unified account (``unified``; settable after start until ccxt's first private call; it also sets
``order_path`` to the v3 place-order path): the settings probe answers the account's settings
(``accountMode: unified``), so ccxt trades through v3, and the classic spot trading and spot asset
endpoints (``/api/v2/spot/trade/*``, ``/api/v2/spot/account/assets``) refuse the key with 40085, as
Bitget refuses a unified account's key there. ``GET /api/v2/spot/account/info`` (the key's
``userId``, which the adapter reads) still answers: Bitget's documents do not say it refuses a
unified key. v3: ``GET /api/v3/account/assets`` (``{..., "assets": [{coin, equity, balance,
available, locked, debt, usdValue}]}``, non-zero balances only); ``POST /api/v3/trade/place-order``
(``category`` SPOT, ``qty`` the base amount, but the quote to spend for a market buy, Bitget's rule
for spot; ``clientOid`` at most 32 of ``[.A-Z:/a-z0-9_-]``, used once; ``timeInForce`` gtc or ioc;
answers the ids alone); ``GET /api/v3/trade/order-info`` (``orderId`` wins over ``clientOid``; an
order Bitget does not have is error 25204 "Order does not exist", not an empty answer); ``GET
/api/v3/trade/unfilled-orders`` and ``GET /api/v3/trade/history-orders`` (``{"list", "cursor"}``,
newest first, ``limit`` 100 by default and at most, older pages by ``cursor``, the last orderId of
the page before; ``symbol`` optional, and ccxt sends none to the history; ``category`` required for
the history; ``startTime``/``endTime``, creation times in ms, at most 30 days apart); ``POST
/api/v3/trade/cancel-order`` (by ``orderId`` or ``clientOid``; the ``symbol`` ccxt adds is not
Bitget's and ignored; answers the ids alone; 25204 for an order not open) and ``GET
/api/v3/trade/fills`` (``{"list", "cursor"}``, newest first). v3 orders say ``category``,
``qty``/``amount``, ``cumExecQty``/``cumExecValue``, ``avgPrice``, ``orderStatus`` (live,
partially_filled, filled, cancelled), ``feeDetail`` (``[{feeCoin, fee}]``, the fee charged as a
positive amount) and ``createdTime``/``updatedTime``. v3 parameter errors are 400172 ("Parameter
verification failed", the v3 twin of 40017).

In either mode market orders are immediate-or-cancel in effect, and the base class's faults,
``closed_listed``, ``listing_delay`` and partial fills apply to the mode's endpoints alike.
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
# A classic account's key at a v3 (unified account) endpoint, and a unified account's at a classic one.
_CLASSIC_ACCOUNT = (
    "40084", "You are in Classic Account mode, and the Unified Account API is not supported at this time"
)
_UNIFIED_ACCOUNT = (
    "40085", "You are in Unified Account mode, and the Classic Account API is not supported at this time"
)
_CLASSIC_ORDERS = "/api/v2/spot/trade/place-order"
_UTA_ORDERS = "/api/v3/trade/place-order"
_UTA_PARAM_ERROR = ("400172", "Parameter verification failed")  # the v3 twin of 40017: ccxt's BadRequest
_UTA_NOT_FOUND = ("25204", "Order does not exist")  # not in ccxt's error map: a bare ExchangeError
# Bitget's v3 clientOid: 1 to 32 of these characters (its documented pattern).
_UTA_CLIENT_OID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,32}$")
_UTA_CATEGORIES = frozenset({"SPOT", "MARGIN", "USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES"})
_UTA_STATUS = {"closed": "filled", "canceled": "cancelled"}
_UTA_MAX_LIMIT = 100  # the v3 listings' default and largest ``limit``
_UTA_WINDOW_MS = 30 * 24 * 3600 * 1000  # the history's and fills' largest startTime-endTime span
# Engine refusals as Bitget's v3 (code, msg); none of them is in ccxt's error map.
_UTA_ERRORS = {
    "insufficient_funds": ("25202", "Insufficient balance"),
    "duplicate_order": ("25212", "Duplicate clientOid"),
}


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
    order_path = _CLASSIC_ORDERS
    listing_page = 100  # Bitget's default (and largest) ``limit`` of its order listings, v2 and v3
    key_header = "ACCESS-KEY"
    private_paths = ("/api/v2/spot/account/", "/api/v2/spot/trade/", "/api/v3/account/", "/api/v3/trade/")
    taker_fee = "0.001"  # the symbols' takerFeeRate (the state's fee rate), which ccxt reads
    fee_in_received = True  # a buy's fee is charged in the coin it buys
    passphrase: str | None = "bitget-test-passphrase"

    def __init__(
        self, state: ExchangeState, api_key: str, secret: str, passphrase: str, hang_seconds: float = 3.0,
        *, unified: bool = False,
    ) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        state.market_ioc = True  # a spot market order's unfilled rest is canceled at once
        self.passphrase = passphrase
        self._symbol_by_id = {self.symbol_id(s): s for s in state.markets}
        self.uid = 6130000001  # the account's userId, which orders and the account info name
        self.other_api_keys: set[str] = set()  # more keys of the account (same secret and passphrase)
        # Each order's ``size`` (v2) or ``qty`` (v3) as sent: the quote to spend for a market buy,
        # the base amount otherwise.
        self._sizes: dict[str, str] = {}
        self._time_in_force: dict[str, str] = {}  # each v3 order's timeInForce
        self._unified = False
        self.unified = unified
        # The key may not read the account's settings (it lacks that permission): 40014.
        self.settings_forbidden = False

    @property
    def unified(self) -> bool:
        """Whether the account is a unified trading account (see the module's doc). Setting it also
        sets ``order_path`` (where ``drop_response_next`` strikes by default) to the mode's."""
        return self._unified

    @unified.setter
    def unified(self, value: bool) -> None:
        self._unified = value
        self.order_path = _UTA_ORDERS if value else _CLASSIC_ORDERS

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
        r.add_get("/api/v3/market/instruments", self.uta_instruments)
        r.add_get("/api/v3/market/tickers", self.uta_tickers)
        # (method, path, handler, the account mode it serves: True unified, False classic, None both)
        private: list[tuple[str, str, PrivateHandler, bool | None]] = [
            ("GET", "/api/v2/spot/account/info", self.account_info, None),
            ("GET", "/api/v2/spot/account/assets", self.assets, False),
            ("GET", "/api/v2/spot/trade/orderInfo", self.order_info, False),
            ("GET", "/api/v2/spot/trade/unfilled-orders", self.unfilled_orders, False),
            ("GET", "/api/v2/spot/trade/history-orders", self.history_orders, False),
            ("GET", "/api/v2/spot/trade/fills", self.fills, False),
            ("POST", "/api/v2/spot/trade/place-order", self.place_order, False),
            ("POST", "/api/v2/spot/trade/cancel-order", self.cancel_order, False),
            ("GET", "/api/v3/account/settings", self.uta_settings, True),
            ("GET", "/api/v3/account/assets", self.uta_assets, True),
            ("POST", "/api/v3/trade/place-order", self.uta_place_order, True),
            ("GET", "/api/v3/trade/order-info", self.uta_order_info, True),
            ("GET", "/api/v3/trade/unfilled-orders", self.uta_unfilled_orders, True),
            ("GET", "/api/v3/trade/history-orders", self.uta_history_orders, True),
            ("POST", "/api/v3/trade/cancel-order", self.uta_cancel_order, True),
            ("GET", "/api/v3/trade/fills", self.uta_fills, True),
        ]
        for method, path, handler, unified in private:
            r.add_route(method, path, self._private(handler, unified))

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

    def _private(
        self, handler: PrivateHandler, unified: bool | None = None
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``handler`` behind Bitget's checks of the key, and (``unified`` not None) of the account
        mode: a key of the other mode is refused (40085 at a classic endpoint, 40084 at a v3 one)."""
        param_error = _UTA_PARAM_ERROR if unified else (_PARAM_ERROR, "Parameter verification failed")

        async def checked(request: web.Request) -> web.Response:
            body = await request.text() if request.method == "POST" else ""
            refused = self._refusal(request, body)
            if refused is not None:
                return refused
            if self.settings_forbidden and request.path == "/api/v3/account/settings":
                return _error("40014", "Incorrect permissions")
            if unified is not None and unified != self.unified:
                return _error(*(_CLASSIC_ACCOUNT if unified else _UNIFIED_ACCOUNT))
            params = dict(request.query)
            if request.method == "POST":
                try:
                    sent = json.loads(body or "{}")
                except ValueError:
                    return _error(*param_error)
                if not isinstance(sent, dict):
                    return _error(*param_error)
                params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in sent.items()})
            try:
                return await handler(params)
            except ValueError:  # a number parameter that is not one
                return _error(*param_error)

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

    def _uta_spot_query(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        """A v3 market read's symbol filter, or its whole answer: refused (an unknown category or
        symbol), or none for a category other than spot."""
        category, wanted = request.query.get("category"), request.query.get("symbol")
        if category not in _UTA_CATEGORIES:
            return None, _error(*_UTA_PARAM_ERROR)
        if wanted and wanted not in self._symbol_by_id:
            return None, _error("25100", f"Trading pair {wanted} does not exist")
        if category != "SPOT":
            return None, _ok([])
        return wanted, None

    async def uta_instruments(self, request: web.Request) -> web.Response:
        """GET /api/v3/market/instruments?category=: the spot symbols (no fee rates: Bitget states
        them for futures alone); margin and futures: none."""
        wanted, answered = self._uta_spot_query(request)
        if answered is not None:
            return answered
        return _ok([
            {
                "symbol": self.symbol_id(s), "category": "SPOT", "baseCoin": m.base, "quoteCoin": m.quote,
                "buyLimitPriceRatio": "0.05", "sellLimitPriceRatio": "0.05", "feeRateUpRatio": "",
                "minOrderQty": dec(m.min_amount), "maxOrderQty": "", "pricePrecision": _places(m.price_step),
                "quantityPrecision": _places(m.amount_step), "quotePrecision": _places(_QUOTE_PRECISION),
                "minOrderAmount": dec(m.min_cost), "maxSymbolOrderNum": "", "maxProductOrderNum": "",
                "status": "online", "offTime": "", "limitOpenTime": "", "maintainTime": "", "areaSymbol": "no",
            }
            for s, m in self.state.markets.items() if not wanted or wanted == self.symbol_id(s)
        ])

    async def uta_tickers(self, request: web.Request) -> web.Response:
        """GET /api/v3/market/tickers?category=: the spot tickers; margin and futures: none."""
        wanted, answered = self._uta_spot_query(request)
        if answered is not None:
            return answered
        now = _ms(time.time())
        rows = []
        for symbol, price in self.state.prices.items():
            if wanted and wanted != self.symbol_id(symbol):
                continue
            p = dec(price)
            rows.append({
                "category": "SPOT", "symbol": self.symbol_id(symbol), "ts": now, "lastPrice": p, "openPrice24h": p,
                "highPrice24h": p, "lowPrice24h": p, "ask1Price": p, "bid1Price": p, "bid1Size": "1",
                "ask1Size": "1", "price24hPcnt": "0", "volume24h": "100", "turnover24h": dec(price * 100),
            })
        return _ok(rows)

    # ------------------------------------------------------------------ account
    async def uta_settings(self, params: Params) -> web.Response:
        """GET /api/v3/account/settings (a unified account's key alone; a classic one's is refused with
        40084): ccxt's probe of the account mode, which takes any answer for a unified account."""
        return _ok({
            "uid": str(self.uid), "accountMode": "unified", "assetMode": "multi_assets", "holdMode": "one_way_mode",
            "stpMode": "none", "symbolConfigList": [], "coinConfigList": [],
        })

    def _usd_value(self, coin: str, amount: Decimal) -> Decimal:
        """``amount`` of ``coin`` at the last price of its market against a quote (1 for a quote)."""
        quotes = {m.quote for m in self.state.markets.values()}
        if coin in quotes:
            return amount
        price = next((p for s, p in self.state.prices.items() if s.split("/")[0] == coin), Decimal(0))
        return amount * price

    async def uta_assets(self, params: Params) -> web.Response:
        """GET /api/v3/account/assets: the unified account's equity and its non-zero coins;
        ``locked`` is what open orders hold (``available`` the rest)."""
        rows, equity = [], Decimal(0)
        for coin, total in self.state.balances.items():
            if total == 0:
                continue
            held, value = self.state.locked(coin), self._usd_value(coin, total)
            equity += value
            rows.append({
                "coin": coin, "equity": dec(total), "usdValue": dec(value), "balance": dec(total),
                "available": dec(total - held), "debt": "0", "locked": dec(held),
            })
        btc = next((p for s, p in self.state.prices.items() if s.split("/")[0] == "BTC"), None)
        return _ok({
            "accountEquity": dec(equity), "usdtEquity": dec(equity),
            "btcEquity": dec((equity / btc).quantize(_QUOTE_PRECISION)) if btc else "0",
            "unrealisedPnl": "0", "usdtUnrealisedPnl": "0", "btcUnrealizedPnl": "0", "effEquity": dec(equity),
            "mmr": "0", "imr": "0", "mgnRatio": "0", "positionMgnRatio": "0", "assets": rows,
        })

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
        order = self._on_engine(symbol, side, order_type, amount, price, client_oid, force,
                                _ERRORS, (_PARAM_ERROR, "Parameter verification failed"))
        if isinstance(order, FakeOrder):
            self._sizes[order.id] = params["size"]
        return order

    def _on_engine(
        self, symbol: str, side: str, order_type: str, amount: Decimal, price: Decimal | None,
        client_oid: str | None, force: str, refusals: dict[str, tuple[str, str]], refused: tuple[str, str],
    ) -> FakeOrder | web.Response:
        """The order placed on the engine, its unfilled rest canceled at once where it is ioc; or
        the error the engine's refusal is (``refusals`` by its kind, ``refused`` otherwise)."""
        order_id = str(_ORDER_ID_BASE + self.state.next_number())
        try:
            order = self.state.place(symbol, side, order_type, amount, price, client_oid, order_id)
        except EngineError as exc:
            return _error(*refusals.get(exc.kind, refused))
        if force == "ioc" and order.status == "open":
            self.state.cancel(order_id=order.id)
        return order

    @staticmethod
    def _ids_of(placed: FakeOrder | web.Response) -> web.Response:
        """A place-order answer (v2 and v3 alike): the order's ids alone, or the refusal."""
        if isinstance(placed, web.Response):
            return placed
        return _ok({"orderId": placed.id, "clientOid": placed.client_order_id or ""})

    async def place_order(self, params: Params) -> web.Response:
        """POST /api/v2/spot/trade/place-order: answers the order's ids only."""
        return self._ids_of(self._place_checked(params))

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
        the engine's (a buy's in the coin it buys)."""
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


    # ------------------------------------------------------------------ unified account orders
    def _uta_order_json(self, order: FakeOrder) -> dict[str, Any]:
        """An order as the v3 order-info and listings show it: ``qty`` the base amount asked, but
        "0" for a market buy, whose ``amount`` is the quote it spends; ``feeDetail`` the fee charged
        (a positive amount), its coin and fee null while nothing filled."""
        spends = order.order_type == "market" and order.side == "buy"
        sent = self._sizes.get(order.id, dec(order.amount))
        updated = order.closed_at or (order.fills[-1].time if order.fills else order.created_at)
        if order.status == "open":
            status = "partially_filled" if order.filled else "live"
        else:
            status = _UTA_STATUS[order.status]
        fee: dict[str, Any] = (
            {"feeCoin": order.fills[0].fee_currency, "fee": dec(order.fee)} if order.fills
            else {"feeCoin": None, "fee": None}
        )
        return {
            "orderId": order.id, "clientOid": order.client_order_id or "", "category": "SPOT",
            "symbol": self.symbol_id(order.symbol), "orderType": order.order_type, "side": order.side,
            "price": dec(order.price) if order.price is not None else "0",
            "qty": "0" if spends else sent, "amount": sent if spends else "0",
            "cumExecQty": dec(order.filled), "cumExecValue": dec(order.cost),
            "avgPrice": dec(order.average) if order.average is not None else "0",
            "timeInForce": self._time_in_force.get(order.id, "gtc"), "orderStatus": status, "posSide": "",
            "holdMode": "", "tradeSide": "", "reduceOnly": "NO", "stpMode": "none", "feeDetail": [fee],
            "cancelReason": "normal_cancel" if order.status == "canceled" else "", "execType": "normal",
            "createdTime": _ms(order.created_at), "updatedTime": _ms(updated),
        }

    def _uta_place_checked(self, params: Params) -> FakeOrder | web.Response:
        if params.get("category") not in _UTA_CATEGORIES:
            return _error(*_UTA_PARAM_ERROR)
        symbol_id = params.get("symbol", "")
        symbol = self._symbol_by_id.get(symbol_id)
        if params["category"] != "SPOT" or symbol is None:  # spot alone: no margin, no futures here
            return _error("25100", f"Trading pair {symbol_id} does not exist")
        market = self.state.markets[symbol]
        side, order_type = params.get("side"), params.get("orderType")
        if side not in ("buy", "sell") or order_type not in ("limit", "market"):
            return _error(*_UTA_PARAM_ERROR)
        force = (params.get("timeInForce") or "gtc").lower()
        if force not in ("gtc", "ioc"):  # fok and post_only are not modelled
            return _error(*_UTA_PARAM_ERROR)
        client_oid = params.get("clientOid") or None
        if client_oid is not None:
            if not _UTA_CLIENT_OID.fullmatch(client_oid):
                return _error(*_UTA_PARAM_ERROR)
            if self.orders_with_client_id(client_oid):  # a clientOid is taken once, whatever became of its order
                return _error(*_UTA_ERRORS["duplicate_order"])
        qty = finite_decimal(params.get("qty"))
        if qty is None or qty <= 0:
            return _error(*_UTA_PARAM_ERROR)
        price = None
        if order_type == "limit":
            price = finite_decimal(params.get("price"))
            if price is None or price <= 0:
                return _error(*_UTA_PARAM_ERROR)
            if price % market.price_step:
                return _error("25244", f"Price should be a multiple of {dec(market.price_step)}")
        last = self.state.prices[symbol]
        spends = order_type == "market" and side == "buy"  # qty is the quote to spend (Bitget's spot rule)
        if qty % (_QUOTE_PRECISION if spends else market.amount_step):
            return _error("25610", "Order amount does not meet precision requirements")
        if spends:
            cost, amount = qty, (qty / last).quantize(market.amount_step, rounding=ROUND_DOWN)
        else:
            cost, amount = qty * (price or last), qty
        if cost < market.min_cost:
            return _error("25611", "Order quantity must be greater than the minimum order amount")
        if amount < market.min_amount:
            return _error("25207", f"{symbol_id} trading quantity cannot be less than {dec(market.min_amount)} units")
        order = self._on_engine(symbol, side, order_type, amount, price, client_oid, force, _UTA_ERRORS,
                                _UTA_PARAM_ERROR)
        if isinstance(order, FakeOrder):
            self._sizes[order.id] = params["qty"]
            self._time_in_force[order.id] = force
        return order

    async def uta_place_order(self, params: Params) -> web.Response:
        """POST /api/v3/trade/place-order: answers the order's ids only."""
        return self._ids_of(self._uta_place_checked(params))

    def _uta_wanted(self, params: Params) -> FakeOrder | None:
        """The order ``orderId`` (which wins) or ``clientOid`` names, if the look-up finds it."""
        order_id, client_oid = params.get("orderId") or None, params.get("clientOid") or None
        order = self.state.find(order_id=order_id) if order_id else self.state.find(client_order_id=client_oid)
        if order is None or not self._visible(order, by_client_id=order_id is None):
            return None
        return order

    async def uta_order_info(self, params: Params) -> web.Response:
        """GET /api/v3/trade/order-info (orderId wins over clientOid): one order, open or not; an
        order it does not find is error 25204, not an empty answer."""
        if not (params.get("orderId") or params.get("clientOid")):
            return _error(*_UTA_PARAM_ERROR)
        order = self._uta_wanted(params)
        if order is None:
            return _error(*_UTA_NOT_FOUND)
        return _ok(self._uta_order_json(order))

    @staticmethod
    def _uta_window(
        params: Params, default_limit: int, *, required_category: bool
    ) -> tuple[str | None, int | None, int | None, int] | None:
        """A v3 listing's category, startTime and endTime (ms) and limit (``default_limit`` when not
        sent, 100 at most), or None when they are refused: a category not known (or missing where
        required), a window over 30 days, a limit under 1."""
        category = params.get("category")
        if (category is None and required_category) or (category is not None and category not in _UTA_CATEGORIES):
            return None
        start, end, limit = _int_param(params, "startTime"), _int_param(params, "endTime"), _int_param(params, "limit")
        if start is not None and end is not None and not 0 <= end - start <= _UTA_WINDOW_MS:
            return None
        if limit is not None and limit < 1:
            return None
        return category, start, end, min(limit or default_limit, _UTA_MAX_LIMIT)

    def _uta_listing(self, orders: Iterable[FakeOrder], params: Params, *, required_category: bool) -> web.Response:
        """One page of a v3 listing, newest first: ``{"list", "cursor"}``. ``symbol``, ``category``,
        ``startTime``/``endTime`` (creation, ms) and ``cursor`` (older than that orderId: the last of
        the page before) filter; ``limit`` is 100 at most (``listing_page`` when not sent)."""
        window = self._uta_window(params, self.listing_page or _UTA_MAX_LIMIT, required_category=required_category)
        if window is None:
            return _error(*_UTA_PARAM_ERROR)
        category, start, end, limit = window
        wanted, below = params.get("symbol"), _int_param(params, "cursor")
        chosen = [
            o for o in orders
            if category in (None, "SPOT") and self._visible(o, by_client_id=True)
            and (not wanted or self.symbol_id(o.symbol) == wanted)
            and (start is None or o.created_at * 1000 >= start) and (end is None or o.created_at * 1000 <= end)
            and (below is None or int(o.id) < below)
        ]
        page = sorted(chosen, key=lambda o: int(o.id), reverse=True)[:limit]
        return _ok({"list": [self._uta_order_json(o) for o in page], "cursor": page[-1].id if page else ""})

    async def uta_unfilled_orders(self, params: Params) -> web.Response:
        """GET /api/v3/trade/unfilled-orders: live and partially filled orders."""
        return self._uta_listing((o for o in self.state.orders if o.status == "open"), params, required_category=False)

    async def uta_history_orders(self, params: Params) -> web.Response:
        """GET /api/v3/trade/history-orders?category=: filled and cancelled orders."""
        return self._uta_listing((o for o in self.state.orders if o.status != "open"), params, required_category=True)

    async def uta_cancel_order(self, params: Params) -> web.Response:
        """POST /api/v3/trade/cancel-order (by orderId or clientOid; ``category`` optional; the
        ``symbol`` ccxt adds is not one of Bitget's parameters, and ignored): answers the ids only."""
        if not (params.get("orderId") or params.get("clientOid")):
            return _error(*_UTA_PARAM_ERROR)
        category = params.get("category")
        if category is not None and category not in _UTA_CATEGORIES:
            return _error(*_UTA_PARAM_ERROR)
        order = self._uta_wanted(params)
        if order is None or order.status != "open" or category not in (None, "SPOT"):
            return _error(*_UTA_NOT_FOUND)
        self.state.cancel(order_id=order.id)
        return _ok({"orderId": order.id, "clientOid": order.client_order_id or ""})

    def _uta_fill_json(self, order: FakeOrder, fill: FakeFill) -> dict[str, Any]:
        return {
            "execId": str(fill.id), "execLinkId": str(fill.id), "orderId": order.id,
            "clientOid": order.client_order_id or "", "category": "SPOT", "symbol": self.symbol_id(order.symbol),
            "orderType": order.order_type, "side": order.side, "execPrice": dec(fill.price),
            "execQty": dec(fill.quantity), "execValue": dec(fill.cost), "tradeScope": "taker", "tradeSide": "",
            "feeDetail": [{"feeCoin": fill.fee_currency, "fee": dec(fill.fee)}],
            "createdTime": _ms(fill.time), "updatedTime": _ms(fill.time), "execPnl": "0",
        }

    async def uta_fills(self, params: Params) -> web.Response:
        """GET /api/v3/trade/fills: the account's trades (of ``orderId`` alone, if sent), newest first,
        ``{"list", "cursor"}`` (older pages by ``cursor``, the last execId of the page before); fees
        are the engine's (a buy's in the coin it buys), positive amounts."""
        window = self._uta_window(params, _UTA_MAX_LIMIT, required_category=False)
        if window is None:
            return _error(*_UTA_PARAM_ERROR)
        category, start, end, limit = window
        only_id, below = params.get("orderId"), _int_param(params, "cursor")
        rows = [
            (fill.id, self._uta_fill_json(order, fill))
            for order in self.state.orders
            if category in (None, "SPOT") and (not only_id or order.id == only_id)
            for fill in order.fills
            if (start is None or fill.time * 1000 >= start) and (end is None or fill.time * 1000 <= end)
            and (below is None or fill.id < below)
        ]
        rows.sort(key=lambda row: row[0], reverse=True)
        page = [row for _, row in rows[:limit]]
        return _ok({"list": page, "cursor": page[-1]["execId"] if page else ""})


@asynccontextmanager
async def start_fake_bitget(
    state: ExchangeState | None = None,
    *,
    api_key: str = "bg_test_key_0123456789abcdef",
    secret: str = "bitget-test-secret-fedcba9876543210",
    passphrase: str = FakeBitget.passphrase or "",
    hang_seconds: float = 3.0,
    unified: bool = False,
) -> AsyncIterator[FakeBitget]:
    """A running fake Bitget spot API on 127.0.0.1 (random port): a classic account, or
    (``unified``) a unified trading account (its orders at ``/api/v3/trade/*``)."""
    fake = FakeBitget(state or default_state("USDT"), api_key, secret, passphrase, hang_seconds, unified=unified)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
