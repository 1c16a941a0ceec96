"""A fake Binance spot REST API (``/api/v3/*``, ``/sapi/v1/*``) good enough for ccxt's binance class.

Signed endpoints need an ``X-MBX-APIKEY`` header equal to the configured key and a ``signature``
parameter; the signature itself is not verified.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.engine import EngineError, ExchangeState, FakeFill, FakeOrder, default_state
from tests.fakes.server import FakeExchangeServer, RecordedRequest, dec

_ERRORS = {
    "insufficient_funds": (-2010, "Account has insufficient balance for requested action."),
    "invalid_order": (-1013, "Filter failure: LOT_SIZE"),
    "unknown_symbol": (-1121, "Invalid symbol."),
    "unknown_order": (-2013, "Order does not exist."),
    "duplicate_order": (-2010, "Duplicate order sent."),
}
_STATUS = {"open": "NEW", "closed": "FILLED", "canceled": "CANCELED"}


def _error(code: int, message: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": message}, status=status)


class FakeBinance(FakeExchangeServer):
    order_path = "/api/v3/order"
    fee_in_received = True  # a buy's fee is charged in the coin it buys
    key_header = "X-MBX-APIKEY"
    private_paths = ("/api/v3/account", "/api/v3/order", "/api/v3/openOrders", "/api/v3/allOrders",
                     "/api/v3/myTrades", "/sapi/")

    def __init__(self, state: ExchangeState, api_key: str, secret: str, hang_seconds: float = 3.0) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        self._symbol_by_id = {s.replace("/", ""): s for s in state.markets}
        # Further API keys of the same account (a user may make several), and the account's id.
        self.other_api_keys: set[str] = set()
        self.uid = 1

    def rate_limit_response(self) -> web.Response:
        return _error(-1003, "Too many requests; current limit is 6000 request weight per 1 MINUTE.", 429)

    def named_account(self) -> str | None:
        return str(self.uid)

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        return dict(parse_qsl(request.body)).get("newClientOrderId")

    def not_found_response(self, request: web.Request) -> web.Response:
        return web.json_response({"code": -1, "msg": f"no such endpoint {request.path}"}, status=404)

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v3/ping", self.ping)
        r.add_get("/api/v3/time", self.server_time)
        r.add_get("/api/v3/exchangeInfo", self.exchange_info)
        r.add_get("/api/v3/ticker/24hr", self.ticker_24hr)
        r.add_get("/api/v3/ticker/price", self.ticker_price)
        r.add_get("/api/v3/account", self._signed(self.account))
        r.add_post("/api/v3/order", self._signed(self.new_order))
        r.add_get("/api/v3/order", self._signed(self.get_order))
        r.add_delete("/api/v3/order", self._signed(self.cancel_order))
        r.add_get("/api/v3/openOrders", self._signed(self.open_orders))
        r.add_get("/api/v3/allOrders", self._signed(self.all_orders))
        r.add_get("/api/v3/myTrades", self._signed(self.my_trades))
        r.add_get("/sapi/v1/capital/config/getall", self._signed(self.capital_config))

    def _signed(self, handler: Any) -> Any:
        async def checked(request: web.Request) -> web.Response:
            if self.reject_auth or request.headers.get("X-MBX-APIKEY") not in {self.api_key, *self.other_api_keys}:
                return _error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            params = dict(request.query)
            body = await request.text()
            if body:
                params.update(parse_qsl(body))
            if "signature" not in params:
                return _error(-1022, "Signature for this request is not valid.")
            response: web.Response = await handler(params)
            return response

        return checked

    # ------------------------------------------------------------------ public
    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def server_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def exchange_info(self, request: web.Request) -> web.Response:
        symbols = []
        for symbol, m in self.state.markets.items():
            symbols.append({
                "symbol": symbol.replace("/", ""),
                "status": "TRADING",
                "baseAsset": m.base,
                "baseAssetPrecision": 8,
                "quoteAsset": m.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": True,
                "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": dec(m.price_step), "maxPrice": "1000000",
                     "tickSize": dec(m.price_step)},
                    {"filterType": "LOT_SIZE", "minQty": dec(m.min_amount), "maxQty": "9000",
                     "stepSize": dec(m.amount_step)},
                    {"filterType": "NOTIONAL", "minNotional": dec(m.min_cost), "applyMinToMarket": True,
                     "maxNotional": "9000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            })
        return web.json_response({
            "timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [],
            "exchangeFilters": [], "symbols": symbols,
        })

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        now = int(time.time() * 1000)
        rows = []
        for symbol, price in self.state.prices.items():
            p = dec(price)
            rows.append({
                "symbol": symbol.replace("/", ""), "priceChange": "0", "priceChangePercent": "0",
                "weightedAvgPrice": p, "prevClosePrice": p, "lastPrice": p, "lastQty": "0.1",
                "bidPrice": p, "bidQty": "1", "askPrice": p, "askQty": "1", "openPrice": p,
                "highPrice": p, "lowPrice": p, "volume": "100", "quoteVolume": "1000",
                "openTime": now - 86_400_000, "closeTime": now, "firstId": 1, "lastId": 100, "count": 100,
            })
        return web.json_response(rows)

    async def ticker_price(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"symbol": s.replace("/", ""), "price": dec(p)} for s, p in self.state.prices.items()]
        )

    # ------------------------------------------------------------------ signed
    async def capital_config(self, params: dict[str, str]) -> web.Response:
        return web.json_response([])

    async def account(self, params: dict[str, str]) -> web.Response:
        return web.json_response({
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": int(time.time() * 1000), "accountType": "SPOT",
            "balances": [
                {"asset": c, "free": dec(self.state.free(c)), "locked": dec(self.state.locked(c))}
                for c in self.state.balances
            ],
            "permissions": ["SPOT"], "uid": self.uid,
        })

    def _order_json(self, order: FakeOrder, with_fills: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "symbol": order.symbol.replace("/", ""),
            "orderId": int(order.id),
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "transactTime": int(order.created_at * 1000),
            "time": int(order.created_at * 1000),
            "updateTime": int((order.closed_at or order.created_at) * 1000),
            "price": dec(order.price) if order.price is not None else "0.00000000",
            "origQty": dec(order.amount),
            "executedQty": dec(order.filled),
            "cummulativeQuoteQty": dec(order.cost),
            "status": _STATUS[order.status],
            "timeInForce": "GTC",
            "type": order.order_type.upper(),
            "side": order.side.upper(),
            "isWorking": True,
            "workingTime": int(order.created_at * 1000),
            "selfTradePreventionMode": "NONE",
        }
        if with_fills:
            # Only the answer to a new order lists fills; GET and DELETE /order carry no commission.
            body["fills"] = [
                {"price": dec(f.price), "qty": dec(f.quantity), "commission": dec(f.fee),
                 "commissionAsset": f.fee_currency, "tradeId": f.id}
                for f in order.fills
            ]
        return body

    @staticmethod
    def _trade_json(order: FakeOrder, fill: FakeFill) -> dict[str, Any]:
        return {
            "symbol": order.symbol.replace("/", ""),
            "id": fill.id,
            "orderId": int(order.id),
            "orderListId": -1,
            "price": dec(fill.price),
            "qty": dec(fill.quantity),
            "quoteQty": dec(fill.cost),
            "commission": dec(fill.fee),
            "commissionAsset": fill.fee_currency,
            "time": int(fill.time * 1000),
            "isBuyer": order.side == "buy",
            "isMaker": False,
            "isBestMatch": True,
        }

    async def new_order(self, params: dict[str, str]) -> web.Response:
        symbol = self._symbol_by_id.get(params.get("symbol", ""))
        if symbol is None:
            return _error(*_ERRORS["unknown_symbol"])
        price = Decimal(params["price"]) if "price" in params else None
        try:
            order = self.state.place(
                symbol, params["side"].lower(), params["type"].lower(), Decimal(params["quantity"]), price,
                params.get("newClientOrderId"), str(self.state.next_number()),
            )
        except EngineError as exc:
            return _error(*_ERRORS.get(exc.kind, (-1013, "Invalid order")))
        return web.json_response(self._order_json(order, with_fills=True))

    def _lookup(self, params: dict[str, str]) -> FakeOrder | None:
        order = self.state.find(
            order_id=params.get("orderId"), client_order_id=params.get("origClientOrderId")
        )
        if order is not None and order.status != "open" and not self.state.closed_listed:
            return None
        if order is not None and params.get("origClientOrderId") and not self.state.listed(order):
            return None
        return order

    async def get_order(self, params: dict[str, str]) -> web.Response:
        order = self._lookup(params)
        if order is None:
            return _error(*_ERRORS["unknown_order"])
        return web.json_response(self._order_json(order))

    async def cancel_order(self, params: dict[str, str]) -> web.Response:
        order = self._lookup(params)
        try:
            self.state.cancel(order_id=order.id if order else "-")
        except EngineError:
            return _error(-2011, "Unknown order sent.")
        assert order is not None
        return web.json_response(self._order_json(order))

    async def my_trades(self, params: dict[str, str]) -> web.Response:
        """GET /api/v3/myTrades: the account's trades on one symbol, optionally of one order."""
        symbol = self._symbol_by_id.get(params.get("symbol", ""))
        if symbol is None:
            return _error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        order_id = params.get("orderId")
        trades = [
            self._trade_json(order, fill)
            for order in self.state.orders
            if order.symbol == symbol and (order_id is None or order.id == order_id)
            for fill in order.fills
        ]
        return web.json_response(sorted(trades, key=lambda t: t["id"]))

    async def open_orders(self, params: dict[str, str]) -> web.Response:
        wanted = self._symbol_by_id.get(params.get("symbol", ""))
        return web.json_response([
            self._order_json(o) for o in self.state.orders
            if o.status == "open" and (wanted is None or o.symbol == wanted)
        ])

    async def all_orders(self, params: dict[str, str]) -> web.Response:
        wanted = self._symbol_by_id.get(params.get("symbol", ""))
        return web.json_response([self._order_json(o) for o in self.state.orders if o.symbol == wanted])


@asynccontextmanager
async def start_fake_binance(
    state: ExchangeState | None = None,
    *,
    api_key: str = "binance-test-key-0123456789abcdef",
    secret: str = "binance-test-secret-fedcba9876543210",
    hang_seconds: float = 3.0,
) -> AsyncIterator[FakeBinance]:
    """A running fake Binance spot API on 127.0.0.1 (random port)."""
    fake = FakeBinance(state or default_state("USDT"), api_key, secret, hang_seconds)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
