"""A fake OKX v5 spot REST API (``/api/v5/*``) good enough for ccxt's okx class.

Covers spot instruments and tickers, the trading account's balance and config (its ``uid``),
currencies, placing (single and batch), looking up, listing and canceling orders, and fills, in
OKX's shapes (``{"code": "0", "msg": "", "data": [...]}``, string numbers, negative fees) and error
codes. Private calls need ``OK-ACCESS-KEY`` (the configured key or one of ``other_api_keys``), the
configured ``OK-ACCESS-PASSPHRASE``, a fresh ``OK-ACCESS-TIMESTAMP`` and an ``OK-ACCESS-SIGN``
(not verified). A spot market order's ``sz`` counts the quote currency unless ``tgtCcy=base_ccy``
(OKX's default for market buys is ``quote_ccy``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

from tests.fakes.engine import EngineError, ExchangeState, FakeFill, FakeOrder, default_state
from tests.fakes.server import FakeExchangeServer, RecordedRequest, dec, finite_decimal, json_body_field

_INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
_CHAINS = {"BTC": "Bitcoin", "ETH": "ERC20", "SOL": "Solana", "USDT": "TRC20", "USDC": "ERC20"}
_CLIENT_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_MAX_CLOCK_SKEW = 30.0  # seconds OKX allows between OK-ACCESS-TIMESTAMP and its own clock
_ERRORS = {  # engine refusals as (sCode, sMsg)
    "insufficient_funds": ("51008", "Order failed. Insufficient {ccy} balance in account."),
    "invalid_order": ("51020", "Your order should meet or exceed the minimum order amount."),
    "unknown_symbol": ("51001", "Instrument ID or Spread ID doesn't exist."),
    "duplicate_order": ("51016", "Duplicated clOrdId"),
}
_STATE = {"closed": "filled", "canceled": "canceled"}

Params = dict[str, str]
PrivateHandler = Callable[[Any], Awaitable[web.Response]]


def _ok(data: list[Any]) -> web.Response:
    return web.json_response({"code": "0", "msg": "", "data": data})


def _error(code: str, message: str, status: int = 200) -> web.Response:
    return web.json_response({"code": code, "msg": message, "data": []}, status=status)


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def _micros() -> str:
    return str(int(time.time() * 1_000_000))




class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeOkx(FakeExchangeServer):
    order_path = "/api/v5/trade/order"
    listing_page = 100
    key_header = "OK-ACCESS-KEY"
    private_paths = ("/api/v5/account/", "/api/v5/trade/", "/api/v5/asset/")
    taker_fee = "0.0015"  # ccxt's okx takes its spot fees from its own defaults, not from the API
    fee_in_received = True  # a buy's fee is charged in the coin it buys
    min_cost = None  # OKX's instruments state no minimum order value, so ccxt reports none

    def __init__(
        self, state: ExchangeState, api_key: str, secret: str, passphrase: str, hang_seconds: float = 3.0
    ) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        state.market_ioc = True  # a spot market order's unfilled rest is canceled at once
        self.passphrase = passphrase
        self._symbol_by_id = {self.inst_id(s): s for s in state.markets}
        # Further API keys of the same account, the account's id, and its main account's (None: it is one).
        self.other_api_keys: set[str] = set()
        self.uid = 44000001
        self.main_uid: int | None = None
        # Each order's size and tgtCcy as sent (a market order's sz may count the quote currency).
        self._sent: dict[str, tuple[str, str]] = {}

    @staticmethod
    def inst_id(symbol: str) -> str:
        return symbol.replace("/", "-")

    def rate_limit_response(self) -> web.Response:
        return _error("50011", "Too Many Requests", 429)

    def not_found_response(self, request: web.Request) -> web.Response:
        return _error("404", f"Not Found: {request.path}", 404)

    def named_account(self) -> str | None:
        return str(self.uid)

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        return json_body_field(request, "clOrdId")

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v5/public/time", self.server_time)
        r.add_get("/api/v5/system/status", self.system_status)
        r.add_get("/api/v5/public/instruments", self.instruments)
        r.add_get("/api/v5/market/tickers", self.tickers)
        r.add_get("/api/v5/market/ticker", self.ticker)
        private_get: dict[str, PrivateHandler] = {
            "/api/v5/account/balance": self.balance,
            "/api/v5/account/config": self.account_config,
            "/api/v5/account/trade-fee": self.trade_fee,
            "/api/v5/asset/currencies": self.currencies,
            "/api/v5/trade/order": self.get_order,
            "/api/v5/trade/orders-pending": self.orders_pending,
            "/api/v5/trade/orders-history": self.orders_history,
            "/api/v5/trade/orders-history-archive": self.orders_history,
            "/api/v5/trade/fills": self.fills,
            "/api/v5/trade/fills-history": self.fills_history,
        }
        private_post: dict[str, PrivateHandler] = {
            "/api/v5/trade/order": self.place_order,
            "/api/v5/trade/batch-orders": self.place_batch,
            "/api/v5/trade/cancel-order": self.cancel_order,
        }
        for path, handler in private_get.items():
            r.add_get(path, self._private(handler))
        for path, handler in private_post.items():
            r.add_post(path, self._private(handler))

    def _private(self, handler: PrivateHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def checked(request: web.Request) -> web.Response:
            headers = request.headers
            key = headers.get("OK-ACCESS-KEY", "")
            if not key:
                return _error("50103", 'Request header "OK-ACCESS-KEY" cannot be empty.', 401)
            if not headers.get("OK-ACCESS-SIGN"):
                return _error("50106", 'Request header "OK-ACCESS-SIGN" cannot be empty.', 401)
            stamp = headers.get("OK-ACCESS-TIMESTAMP", "")
            if not stamp:
                return _error("50107", 'Request header "OK-ACCESS-TIMESTAMP" cannot be empty.', 401)
            if not headers.get("OK-ACCESS-PASSPHRASE"):
                return _error("50104", 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.', 401)
            if self.reject_auth or key not in {self.api_key, *self.other_api_keys}:
                return _error("50111", "Invalid OK-ACCESS-KEY.", 401)
            if headers.get("OK-ACCESS-PASSPHRASE") != self.passphrase:
                return _error("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.', 401)
            try:
                sent_at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return _error("50112", "Invalid OK-ACCESS-TIMESTAMP.", 401)
            if abs(time.time() - sent_at) > _MAX_CLOCK_SKEW:
                return _error("50102", "Timestamp request expired.", 401)
            if request.method == "GET":
                return await handler(dict(request.query))
            text = await request.text()
            try:
                body = json.loads(text) if text else {}
            except ValueError:
                return _error("50002", "JSON syntax error")
            return await handler(body)

        return checked

    # ------------------------------------------------------------------ public
    async def server_time(self, request: web.Request) -> web.Response:
        return _ok([{"ts": _ms(time.time())}])

    async def system_status(self, request: web.Request) -> web.Response:
        return _ok([])  # no maintenance scheduled

    @staticmethod
    def _not_spot(request: web.Request) -> web.Response | None:
        """The answer to a listing of another instType than SPOT (an error, or nothing: this fake
        lists spot instruments only); None for SPOT."""
        inst_type = request.query.get("instType", "")
        if not inst_type:
            return _error("50014", "Parameter instType can not be empty.")
        if inst_type not in _INST_TYPES:
            return _error("51000", "Parameter instType error")
        return _ok([]) if inst_type != "SPOT" else None

    async def instruments(self, request: web.Request) -> web.Response:
        if (not_spot := self._not_spot(request)) is not None:
            return not_spot
        wanted = request.query.get("instId")
        rows = []
        for symbol, m in self.state.markets.items():
            if wanted and wanted != self.inst_id(symbol):
                continue
            rows.append({
                "alias": "", "auctionEndTime": "", "baseCcy": m.base, "category": "1", "ctMult": "",
                "ctType": "", "ctVal": "", "ctValCcy": "", "expTime": "", "futureSettlement": False,
                "instFamily": "", "instId": self.inst_id(symbol), "instType": "SPOT", "lever": "",
                "listTime": "1606468572000", "lotSz": dec(m.amount_step), "maxIcebergSz": "9999999999",
                "maxLmtAmt": "20000000", "maxLmtSz": "9999999999", "maxMktAmt": "1000000",
                "maxMktSz": "1000000", "maxStopSz": "1000000", "maxTriggerSz": "9999999999",
                "maxTwapSz": "9999999999", "minSz": dec(m.min_amount), "optType": "", "quoteCcy": m.quote,
                "ruleType": "normal", "settleCcy": "", "state": "live", "stk": "", "tickSz": dec(m.price_step),
                "tradeQuoteCcyList": [m.quote], "uly": "",
            })
        return _ok(rows)

    def _ticker_json(self, symbol: str) -> dict[str, str]:
        p = dec(self.state.prices[symbol])
        return {
            "instType": "SPOT", "instId": self.inst_id(symbol), "last": p, "lastSz": "0.1", "askPx": p,
            "askSz": "1", "bidPx": p, "bidSz": "1", "open24h": p, "high24h": p, "low24h": p,
            "volCcy24h": "1000", "vol24h": "100", "ts": _ms(time.time()), "sodUtc0": p, "sodUtc8": p,
        }

    async def tickers(self, request: web.Request) -> web.Response:
        if (not_spot := self._not_spot(request)) is not None:
            return not_spot
        return _ok([self._ticker_json(s) for s in self.state.prices])

    async def ticker(self, request: web.Request) -> web.Response:
        symbol = self._symbol_by_id.get(request.query.get("instId", ""))
        if symbol is None:
            return _error("51001", "Instrument ID or Spread ID doesn't exist.")
        return _ok([self._ticker_json(symbol)])

    # ------------------------------------------------------------------ account
    def _in_quote(self, currency: str, amount: Decimal) -> Decimal:
        for symbol, m in self.state.markets.items():
            if m.base == currency:
                return amount * self.state.prices[symbol]
        return amount

    async def balance(self, params: Params) -> web.Response:
        wanted = set(filter(None, params.get("ccy", "").split(",")))
        now = _ms(time.time())
        details = []
        for ccy, total in self.state.balances.items():
            if (wanted and ccy not in wanted) or (not wanted and total == 0):
                continue
            frozen = self.state.locked(ccy)
            details.append({
                "accAvgPx": "", "availBal": dec(total - frozen), "availEq": "", "borrowFroz": "",
                "cashBal": dec(total), "ccy": ccy, "clSpotInUseAmt": "", "crossLiab": "",
                "disEq": dec(self._in_quote(ccy, total)), "eq": dec(total), "eqUsd": dec(self._in_quote(ccy, total)),
                "fixedBal": "0", "frozenBal": dec(frozen), "imr": "", "interest": "", "isoEq": "",
                "isoLiab": "", "isoUpl": "", "liab": "", "maxLoan": "", "maxSpotInUse": "", "mgnRatio": "",
                "mmr": "", "notionalLever": "", "openAvgPx": "", "ordFrozen": dec(frozen), "rewardBal": "0",
                "smtSyncEq": "0", "spotBal": dec(total), "spotCopyTradingEq": "0", "spotInUseAmt": "",
                "spotIsoBal": "0", "spotUpl": "", "spotUplRatio": "", "stgyEq": "0", "totalPnl": "",
                "totalPnlRatio": "", "twap": "0", "uTime": now, "upl": "", "uplLiab": "",
            })
        total_eq = sum((self._in_quote(c, v) for c, v in self.state.balances.items()), Decimal(0))
        return _ok([{
            "adjEq": "", "availEq": "", "borrowFroz": "", "details": details, "imr": "", "isoEq": "",
            "mgnRatio": "", "mmr": "", "notionalUsd": "", "notionalUsdForBorrow": "",
            "notionalUsdForFutures": "", "notionalUsdForOption": "", "notionalUsdForSwap": "",
            "ordFroz": "", "totalEq": dec(total_eq), "uTime": now, "upl": "",
        }])

    async def account_config(self, params: Params) -> web.Response:
        return _ok([{
            "acctLv": "1", "acctStpMode": "cancel_maker", "autoLoan": False, "ctIsoMode": "automatic",
            "enableSpotBorrow": False, "greeksType": "PA", "ip": "", "kycLv": "2", "label": "rebalancer",
            "level": "Lv1", "levelTmp": "", "liquidationGear": "-1",
            "mainUid": str(self.main_uid if self.main_uid is not None else self.uid),
            "mgnIsoMode": "automatic", "opAuth": "0", "perm": "read_only,trade", "posMode": "net_mode",
            "roleType": "0", "spotBorrowAutoRepay": False, "spotOffsetType": "", "spotRoleType": "0",
            "spotTraderInsts": [], "traderInsts": [], "type": "0", "uid": str(self.uid),
        }])

    async def trade_fee(self, params: Params) -> web.Response:
        """GET /api/v5/account/trade-fee: the account's rates, negative as charged (one rate here)."""
        if params.get("instType") != "SPOT":
            return _error("51000", "Parameter instType error")
        rate = dec(-self.state.fee_rate)
        return _ok([{
            "category": "1", "delivery": "", "exercise": "", "fiat": [], "instType": "SPOT", "level": "Lv1",
            "maker": rate, "makerU": "", "makerUSDC": "", "ruleType": "normal", "taker": rate, "takerU": "",
            "takerUSDC": "", "ts": _ms(time.time()),
        }])

    async def currencies(self, params: Params) -> web.Response:
        codes = {c for m in self.state.markets.values() for c in (m.base, m.quote)} | set(self.state.balances)
        wanted = set(filter(None, params.get("ccy", "").split(",")))
        rows = []
        for ccy in sorted(codes):
            if wanted and ccy not in wanted:
                continue
            chain = _CHAINS.get(ccy, ccy)
            rows.append({
                "burningFeeRate": "", "canDep": True, "canInternal": True, "canWd": True, "ccy": ccy,
                "chain": f"{ccy}-{chain}", "ctAddr": "", "depEstOpenTime": "", "depQuotaFixed": "",
                "depQuoteDailyLayer2": "", "fee": "0.0001", "logoLink": "", "mainNet": True,
                "maxFee": "0.0001", "maxFeeForCtAddr": "", "maxWd": "1000000", "minDep": "0.00001",
                "minDepArrivalConfirm": "1", "minFee": "0.0001", "minFeeForCtAddr": "", "minInternal": "0.0001",
                "minWd": "0.001", "minWdUnlockConfirm": "2", "name": ccy, "needTag": False,
                "usedDepQuotaFixed": "", "usedWdQuota": "0", "wdQuota": "10000000", "wdTickSz": "8",
            })
        return _ok(rows)

    # ------------------------------------------------------------------ orders
    def _new_order_id(self) -> str:
        return str(2_300_000_000_000_000_000 + self.state.next_number())

    def _state(self, order: FakeOrder) -> str:
        if order.status == "open":
            return "partially_filled" if order.filled > 0 else "live"
        return _STATE[order.status]

    def _order_json(self, order: FakeOrder) -> dict[str, Any]:
        market = self.state.markets[order.symbol]
        size, tgt_ccy = self._sent.get(order.id, (dec(order.amount), ""))
        last = order.fills[-1] if order.fills else None
        updated = order.closed_at or (last.time if last else order.created_at)
        return {
            "accFillSz": dec(order.filled), "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
            "attachAlgoOrds": [], "avgPx": dec(order.average) if order.average is not None else "",
            "cTime": _ms(order.created_at), "cancelSource": "", "cancelSourceReason": "", "category": "normal",
            "ccy": "", "clOrdId": order.client_order_id or "", "fee": dec(-order.fee),
            "feeCcy": last.fee_currency if last else market.quote,
            "fillPx": dec(last.price) if last else "", "fillSz": dec(last.quantity) if last else "",
            "fillTime": _ms(last.time) if last else "", "instId": self.inst_id(order.symbol),
            "instType": "SPOT", "isTpLimit": "false", "lever": "", "linkedAlgoOrd": {"algoId": ""},
            "ordId": order.id, "ordType": order.order_type, "pnl": "0", "posSide": "",
            "px": dec(order.price) if order.price is not None else "", "pxType": "", "pxUsd": "", "pxVol": "",
            "quickMgnType": "", "rebate": "0", "rebateCcy": market.quote, "reduceOnly": "false",
            "side": order.side, "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "source": "",
            "state": self._state(order), "stpId": "", "stpMode": "cancel_maker", "sz": size, "tag": "",
            "tdMode": "cash", "tgtCcy": tgt_ccy, "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
            "tradeId": str(last.id) if last else "", "tradeQuoteCcy": market.quote, "uTime": _ms(updated),
        }

    def _place(self, body: Any) -> dict[str, Any]:
        """One order of a place-order request: OKX's per-order answer (sCode "0" when placed)."""
        client_id = str(body.get("clOrdId") or "") if isinstance(body, dict) else ""
        answer = {"clOrdId": client_id, "ordId": "", "tag": "", "ts": _ms(time.time())}
        try:
            order = self._place_checked(body, client_id)
        except _Refused as refused:
            return {**answer, "sCode": refused.code, "sMsg": refused.message}
        return {**answer, "ordId": order.id, "sCode": "0", "sMsg": "Order placed"}

    def _place_checked(self, body: Any, client_id: str) -> FakeOrder:
        if not isinstance(body, dict):
            raise _Refused("50002", "JSON syntax error")
        symbol = self._symbol_by_id.get(str(body.get("instId", "")))
        if symbol is None:
            raise _Refused(*_ERRORS["unknown_symbol"])
        market = self.state.markets[symbol]
        if client_id and not _CLIENT_ID.fullmatch(client_id):
            raise _Refused("51000", "Parameter clOrdId error")
        if body.get("tdMode") != "cash":  # a spot-mode account trades spot in cash mode only
            raise _Refused("51000", "Parameter tdMode error")
        side, order_type = body.get("side"), body.get("ordType")
        if side not in ("buy", "sell"):
            raise _Refused("51000", "Parameter side error")
        if order_type not in ("market", "limit"):
            raise _Refused("51000", "Parameter ordType error")
        size = finite_decimal(body.get("sz"))
        if size is None or size <= 0:
            raise _Refused("51000", "Parameter sz error")
        price = None
        if order_type == "limit":
            if body.get("px") in (None, ""):
                raise _Refused("51204", "The price for the limit order can not be empty.")
            price = finite_decimal(body.get("px"))
            if price is None or price <= 0 or price % market.price_step:
                raise _Refused("51000", "Parameter px error")
        tgt_ccy = str(body.get("tgtCcy") or ("quote_ccy" if order_type == "market" and side == "buy" else "base_ccy"))
        if tgt_ccy not in ("base_ccy", "quote_ccy"):
            raise _Refused("51000", "Parameter tgtCcy error")
        if order_type == "market" and tgt_ccy == "quote_ccy":
            amount = (size / self.state.prices[symbol]).quantize(market.amount_step, rounding=ROUND_DOWN)
        else:
            amount = size
            if size % market.amount_step:
                raise _Refused("51121", "Order quantity must be a multiple of the lot size.")
        try:
            order = self.state.place(
                symbol, side, order_type, amount, price, client_id or None, self._new_order_id()
            )
        except EngineError as exc:
            code, message = _ERRORS.get(exc.kind, ("51000", "Parameter sz error"))
            raise _Refused(code, message.format(ccy=str(exc).split()[-1])) from None
        self._sent[order.id] = (dec(size), tgt_ccy if order_type == "market" else "")
        return order

    @staticmethod
    def _answers(results: list[dict[str, Any]]) -> web.Response:
        failed = sum(1 for r in results if r["sCode"] != "0")
        code, message = ("0", "") if not failed else ("1", "All operations failed")
        if failed and failed < len(results):
            code, message = "2", "Bulk operation partially succeeded"
        return web.json_response(
            {"code": code, "msg": message, "data": results, "inTime": _micros(), "outTime": _micros()}
        )

    async def place_order(self, body: Any) -> web.Response:
        """POST /api/v5/trade/order: one order; the answer names it (ordId), no state."""
        return self._answers([self._place(body)])

    async def place_batch(self, body: Any) -> web.Response:
        """POST /api/v5/trade/batch-orders: up to 20 orders, each answered on its own."""
        if not isinstance(body, list) or not body:
            return _error("50002", "JSON syntax error")
        if len(body) > 20:
            return _error("51111", "Maximum 20 orders can be placed in bulk.")
        return self._answers([self._place(entry) for entry in body])

    def _visible(self, order: FakeOrder, by_client_id: bool) -> bool:
        """Whether look-ups find the order: closed ones only while ``closed_listed``; by client
        order id (and in lists) only once ``listing_delay`` has passed."""
        if order.status != "open" and not self.state.closed_listed:
            return False
        return not by_client_id or self.state.listed(order)

    def _lookup(self, inst_id: str, order_id: str | None, client_id: str | None) -> FakeOrder | None:
        """The order by ordId (which wins when both are sent) or clOrdId, on instrument ``inst_id``."""
        order = self.state.find(order_id=order_id) if order_id else self.state.find(client_order_id=client_id)
        if order is None or self.inst_id(order.symbol) != inst_id:
            return None
        return order if self._visible(order, by_client_id=not order_id) else None

    async def get_order(self, params: Params) -> web.Response:
        inst_id = params.get("instId", "")
        if not inst_id:
            return _error("50014", "Parameter instId can not be empty.")
        if inst_id not in self._symbol_by_id:
            return _error("51001", "Instrument ID or Spread ID doesn't exist.")
        order_id, client_id = params.get("ordId"), params.get("clOrdId")
        if not order_id and not client_id:
            return _error("51003", "Either client order ID or order ID is required.")
        order = self._lookup(inst_id, order_id, client_id)
        if order is None:
            return _error("51603", "Order does not exist")
        return _ok([self._order_json(order)])

    async def cancel_order(self, body: Any) -> web.Response:
        if not isinstance(body, dict):
            return _error("50002", "JSON syntax error")
        inst_id = str(body.get("instId", ""))
        order_id, client_id = body.get("ordId") or None, body.get("clOrdId") or None
        answer = {"clOrdId": client_id or "", "ordId": order_id or "", "ts": _ms(time.time())}
        if inst_id not in self._symbol_by_id:
            code, message = "51001", "Instrument ID or Spread ID doesn't exist."
        elif not order_id and not client_id:
            code, message = "51407", "Either order ID or client order ID is required."
        else:
            order = self._lookup(inst_id, order_id, client_id)
            if order is None:
                code = "51400"
                message = "Order cancellation failed as the order has been filled, canceled or does not exist."
            elif order.status == "canceled":
                code, message = "51401", "Order has been canceled."
            elif order.status == "closed":
                code, message = "51402", "Order has been completed."
            else:
                self.state.cancel(order_id=order.id)
                answer = {**answer, "clOrdId": order.client_order_id or "", "ordId": order.id}
                code, message = "0", ""
        return self._answers([{**answer, "sCode": code, "sMsg": message}])

    def _orders(self, params: Params, states: tuple[str, ...]) -> list[dict[str, Any]]:
        """The account's orders in ``states``, newest first, filtered as OKX's list endpoints do."""
        inst_id, ord_type = params.get("instId"), params.get("ordType")
        begin, end = int(params.get("begin") or 0), int(params.get("end") or 0)
        limit = min(int(params.get("limit") or self.listing_page), 100)
        rows = []
        for order in reversed(self.state.orders):
            created = int(order.created_at * 1000)
            if (
                self._state(order) in states
                and self._visible(order, by_client_id=True)
                and (not inst_id or self.inst_id(order.symbol) == inst_id)
                and (not ord_type or order.order_type in ord_type.split(","))
                and (not begin or created >= begin)
                and (not end or created <= end)
            ):
                rows.append(self._order_json(order))
        return rows[:limit]

    async def orders_pending(self, params: Params) -> web.Response:
        """GET /api/v5/trade/orders-pending: live and partially filled orders."""
        if params.get("instType", "SPOT") != "SPOT":
            return _ok([])
        states = ("live", "partially_filled")
        wanted = params.get("state")
        return _ok(self._orders(params, (wanted,) if wanted in states else states))

    async def orders_history(self, params: Params) -> web.Response:
        """GET /api/v5/trade/orders-history(-archive): filled and canceled orders (``state`` picks one)."""
        inst_type = params.get("instType", "")
        if not inst_type:
            return _error("50014", "Parameter instType can not be empty.")
        if inst_type != "SPOT":
            return _ok([])
        states = ("filled", "canceled")
        wanted = params.get("state")
        if wanted and wanted not in (*states, "mmp_canceled"):
            return _error("51000", "Parameter state error")
        return _ok(self._orders(params, (wanted,) if wanted else states))

    def _fill_json(self, order: FakeOrder, fill: FakeFill) -> dict[str, Any]:
        return {
            "billId": str(9_000_000_000_000_000_000 + fill.id), "clOrdId": order.client_order_id or "",
            "execType": "T", "fee": dec(-fill.fee), "feeCcy": fill.fee_currency,
            "feeRate": dec(-self.state.fee_rate), "fillFwdPx": "", "fillIdxPx": "", "fillMarkPx": "",
            "fillMarkVol": "", "fillPnl": "0", "fillPx": dec(fill.price), "fillPxUsd": "", "fillPxVol": "",
            "fillSz": dec(fill.quantity), "fillTime": _ms(fill.time), "instId": self.inst_id(order.symbol),
            "instType": "SPOT", "ordId": order.id, "posSide": "net", "side": order.side,
            "subType": "1" if order.side == "buy" else "2", "tag": "", "tradeId": str(fill.id),
            "tradeQuoteCcy": self.state.markets[order.symbol].quote, "ts": _ms(fill.time),
        }

    def _fills(self, params: Params) -> web.Response:
        if params.get("instType", "SPOT") != "SPOT":
            return _ok([])
        inst_id, order_id = params.get("instId"), params.get("ordId")
        begin, end = int(params.get("begin") or 0), int(params.get("end") or 0)
        limit = min(int(params.get("limit") or 100), 100)
        rows = [
            self._fill_json(order, fill)
            for order in self.state.orders
            if (not inst_id or self.inst_id(order.symbol) == inst_id) and (not order_id or order.id == order_id)
            for fill in order.fills
            if (not begin or fill.time * 1000 >= begin) and (not end or fill.time * 1000 <= end)
        ]
        rows.sort(key=lambda row: int(row["tradeId"]), reverse=True)
        return _ok(rows[:limit])

    async def fills(self, params: Params) -> web.Response:
        """GET /api/v5/trade/fills: the last three days' trades."""
        return self._fills(params)

    async def fills_history(self, params: Params) -> web.Response:
        """GET /api/v5/trade/fills-history: the last three months' trades; instType is required."""
        if not params.get("instType"):
            return _error("50014", "Parameter instType can not be empty.")
        return self._fills(params)


@asynccontextmanager
async def start_fake_okx(
    state: ExchangeState | None = None,
    *,
    api_key: str = "okx-test-key-0123456789abcdef",
    secret: str = "OKX-TEST-SECRET-FEDCBA9876543210",
    passphrase: str = "okx-test-passphrase",
    hang_seconds: float = 3.0,
) -> AsyncIterator[FakeOkx]:
    """A running fake OKX on 127.0.0.1 (random port); API keys on OKX come with a passphrase."""
    fake = FakeOkx(state or default_state("USDT", Decimal("0.0015")), api_key, secret, passphrase, hang_seconds)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
