"""A fake Bybit v5 spot REST API (unified trading account) good enough for ccxt's bybit class.

Market time, instruments and tickers; the UTA wallet balance, account info, API-key info (naming
the account's ``userID``) and coin info; order create, cancel, realtime and history; executions.
Answers use Bybit's ``retCode`` envelope, string numbers and error codes. Private calls need an
``X-BAPI-API-KEY`` header equal to the configured key (or one of ``other_api_keys``) besides
``X-BAPI-SIGN``/``X-BAPI-TIMESTAMP``; signatures are not verified. As on Bybit, a spot market buy's
``qty`` is in the quote coin unless ``marketUnit`` is ``baseCoin``, and a canceled order that had
fills is ``PartiallyFilledCanceled``.
"""

from __future__ import annotations

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

PrivateHandler = Callable[[dict[str, str], str], Awaitable[web.Response]]

# Bybit's retCodes for what the engine refuses (spot, unified account).
_ERRORS = {
    "insufficient_funds": (170131, "Insufficient balance."),
    "invalid_order": (170136, "Order quantity lower than the minimum."),
    "unknown_symbol": (170121, "Invalid symbol."),
    "unknown_order": (170213, "Order does not exist."),
    "duplicate_order": (170141, "Duplicate clientOrderId."),
}
_ORDER_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_CLOSED_STATUSES = ("Filled", "Cancelled", "PartiallyFilledCanceled", "Rejected")
_QUOTE_PRECISION = Decimal("0.00000001")
_ORDER_ID_BASE = 1_900_000_000_000_000_000  # Bybit's spot order ids are 19-digit numbers
_EXEC_ID_BASE = 2_100_000_000_000_000_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def _reply(result: Any, code: int = 0, message: str = "OK", status: int = 200,
           headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": _now_ms()},
        status=status, headers=headers,
    )


def _ok(result: Any) -> web.Response:
    return _reply(result)


def _error(code: int, message: str, status: int = 200) -> web.Response:
    return _reply({}, code, message, status)




def _on_step(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


@dataclass(frozen=True)
class _Sent:
    """What an order request said that the engine does not keep: the unit and size of ``qty``."""

    market_unit: str  # baseCoin|quoteCoin for market orders, "" for limit orders
    qty: str
    base_price: Decimal  # the last price when the order was placed (Bybit's spot ``basePrice``)


class FakeBybit(FakeExchangeServer):
    order_path = "/v5/order/create"
    listing_page = 20
    key_header = "X-BAPI-API-KEY"
    private_paths = ("/v5/account/", "/v5/order/", "/v5/execution/", "/v5/user/", "/v5/asset/")
    taker_fee = "0.001"  # ccxt's bybit gives every spot market 0.1% (it reads no fee from the API)
    fee_in_received = True  # a buy's fee is charged in the coin it buys

    def __init__(self, state: ExchangeState, api_key: str, secret: str, hang_seconds: float = 3.0) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        state.market_ioc = True  # a spot market order's unfilled rest is canceled at once
        self._symbol_by_id = {s.replace("/", ""): s for s in state.markets}
        # Further API keys of the same account (a user may make several), and the account's id.
        self.other_api_keys: set[str] = set()
        self.uid = 51000001
        # Bybit's unifiedMarginStatus: 5 UTA 2.0, 6 UTA 2.0 pro (1 classic, 3/4 UTA 1.0).
        self.unified_margin_status = 6
        self._sent: dict[str, _Sent] = {}
        self._key_ids: dict[str, int] = {}

    def rate_limit_response(self) -> web.Response:
        reset = _now_ms() + 1000
        return _reply({}, 10006, "Too many visits. Exceeded the API Rate Limit.", headers={
            "X-Bapi-Limit": "20", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset),
        })

    def named_account(self) -> str | None:
        return str(self.uid)

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        return json_body_field(request, "orderLinkId")

    def not_found_response(self, request: web.Request) -> web.Response:
        return _error(10017, f"Route not found: {request.path}", 404)

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v5/market/time", self.server_time)
        r.add_get("/v5/market/instruments-info", self.instruments_info)
        r.add_get("/v5/market/tickers", self.tickers)
        r.add_get("/v5/user/query-api", self._private(self.query_api))
        r.add_get("/v5/account/info", self._private(self.account_info))
        r.add_get("/v5/account/wallet-balance", self._private(self.wallet_balance))
        r.add_get("/v5/asset/coin/query-info", self._private(self.coin_info))
        r.add_post("/v5/order/create", self._private(self.create_order))
        r.add_post("/v5/order/cancel", self._private(self.cancel_order))
        r.add_get("/v5/order/realtime", self._private(self.realtime_orders))
        r.add_get("/v5/order/history", self._private(self.order_history))
        r.add_get("/v5/execution/list", self._private(self.executions))

    def _private(self, handler: PrivateHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def checked(request: web.Request) -> web.Response:
            key = request.headers.get("X-BAPI-API-KEY", "")
            sign = request.headers.get("X-BAPI-SIGN", "")
            stamp = request.headers.get("X-BAPI-TIMESTAMP", "")
            if not (key and sign and stamp):
                return _error(10001, f"empty value: apiTimestamp[{stamp}] apiKey[{key}] apiSignature[{sign}]: "
                                     "openapi sign params error!")
            if self.reject_auth or key not in {self.api_key, *self.other_api_keys}:
                return _error(10003, "API key is invalid.", 401)
            params = dict(request.query)
            if request.method == "POST":
                try:
                    body = json.loads(await request.text() or "{}")
                except ValueError:
                    return _error(10001, "Request parameter error.")
                if not isinstance(body, dict):
                    return _error(10001, "Request parameter error.")
                params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
            return await handler(params, key)

        return checked

    # ------------------------------------------------------------------ public
    async def server_time(self, request: web.Request) -> web.Response:
        now = time.time_ns()
        return _ok({"timeSecond": str(now // 1_000_000_000), "timeNano": str(now)})

    async def instruments_info(self, request: web.Request) -> web.Response:
        category = request.query.get("category")
        if category in ("linear", "inverse", "option"):
            return _ok({"category": category, "list": [], "nextPageCursor": ""})
        if category != "spot":
            return _error(10001, "params error: Category is invalid")
        wanted = request.query.get("symbol")
        rows = []
        for symbol, m in self.state.markets.items():
            if wanted is not None and wanted != symbol.replace("/", ""):
                continue
            rows.append({
                "symbol": symbol.replace("/", ""),
                "baseCoin": m.base,
                "quoteCoin": m.quote,
                "innovation": "0",
                "status": "Trading",
                "marginTrading": "utaOnly",
                "stTag": "0",
                "lotSizeFilter": {
                    "basePrecision": dec(m.amount_step),
                    "quotePrecision": dec(_QUOTE_PRECISION),
                    "minOrderQty": dec(m.min_amount),
                    "maxOrderQty": "9000",
                    "minOrderAmt": dec(m.min_cost),
                    "maxOrderAmt": "9000000",
                },
                "priceFilter": {"tickSize": dec(m.price_step)},
                "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"},
            })
        return _ok({"category": "spot", "list": rows, "nextPageCursor": ""})

    async def tickers(self, request: web.Request) -> web.Response:
        category = request.query.get("category")
        if category in ("linear", "inverse", "option"):
            return _ok({"category": category, "list": []})
        if category != "spot":
            return _error(10001, "params error: Category is invalid")
        wanted = request.query.get("symbol")
        if wanted is not None and wanted not in self._symbol_by_id:
            return _error(10001, "Not supported symbols")
        rows = []
        for symbol, price in self.state.prices.items():
            if wanted is not None and wanted != symbol.replace("/", ""):
                continue
            p = dec(price)
            rows.append({
                "symbol": symbol.replace("/", ""), "bid1Price": p, "bid1Size": "1", "ask1Price": p, "ask1Size": "1",
                "lastPrice": p, "prevPrice24h": p, "price24hPcnt": "0", "highPrice24h": p, "lowPrice24h": p,
                "turnover24h": dec(price * 100), "volume24h": "100", "usdIndexPrice": p,
            })
        return _ok({"category": "spot", "list": rows})

    # ------------------------------------------------------------------ account
    async def query_api(self, params: dict[str, str], api_key: str) -> web.Response:
        """GET /v5/user/query-api: the key's permissions and the account (``userID``) it belongs to."""
        key_id = self._key_ids.setdefault(api_key, 13_770_000 + len(self._key_ids) + 1)
        return _ok({
            "id": str(key_id),
            "note": "rebalancer",
            "apiKey": api_key,
            "readOnly": 0,
            "secret": "",
            "permissions": {
                "ContractTrade": [], "Spot": ["SpotTrade"], "Wallet": ["AccountTransfer"], "Options": [],
                "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": [],
                "Affiliate": [], "Earn": [],
            },
            "ips": ["*"],
            "type": 1,
            "deadlineDay": 83,
            "expiredAt": "2027-03-01T00:00:00Z",
            "createdAt": "2026-12-01T00:00:00Z",
            "unified": 0,
            "uta": 1,
            "userID": self.uid,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
            "parentUid": "0",
            "kycLevel": "LEVEL_DEFAULT",
            "kycRegion": "",
        })

    async def account_info(self, params: dict[str, str], api_key: str) -> web.Response:
        return _ok({
            "marginMode": "REGULAR_MARGIN",
            "updatedTime": _ms(time.time() - 86_400),
            "unifiedMarginStatus": self.unified_margin_status,
            "dcpStatus": "OFF",
            "timeWindow": 10,
            "smpGroup": 0,
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
        })

    def _usd_value(self, coin: str, amount: Decimal) -> Decimal:
        if coin in ("USDT", "USDC", "USD"):
            return amount
        price = next((p for s, p in self.state.prices.items() if s.split("/")[0] == coin), Decimal(0))
        return amount * price

    async def wallet_balance(self, params: dict[str, str], api_key: str) -> web.Response:
        """GET /v5/account/wallet-balance?accountType=UNIFIED: coins with a balance (UTA 2.0 leaves
        ``availableToWithdraw`` empty; ``locked`` is what spot open orders hold)."""
        if params.get("accountType") != "UNIFIED":
            return _error(10001, "accountType only support UNIFIED.")
        wanted = set(params["coin"].split(",")) if params.get("coin") else None
        coins = []
        total_usd = Decimal(0)
        for coin, balance in self.state.balances.items():
            if balance == 0 or (wanted is not None and coin not in wanted):
                continue
            usd = self._usd_value(coin, balance)
            total_usd += usd
            coins.append({
                "availableToBorrow": "", "bonus": "0", "accruedInterest": "0", "availableToWithdraw": "",
                "totalOrderIM": "0", "equity": dec(balance), "totalPositionMM": "0", "usdValue": dec(usd),
                "spotHedgingQty": "0", "unrealisedPnl": "0", "collateralSwitch": True, "borrowAmount": "0",
                "totalPositionIM": "0", "walletBalance": dec(balance), "cumRealisedPnl": "0",
                "locked": dec(self.state.locked(coin)), "marginCollateral": True, "coin": coin,
                "spotBorrow": "0",
            })
        total = dec(total_usd)
        return _ok({"list": [{
            "totalEquity": total, "accountIMRate": "0", "accountIMRateByMp": "0", "totalMarginBalance": total,
            "totalInitialMargin": "0", "totalInitialMarginByMp": "0", "accountType": "UNIFIED",
            "totalAvailableBalance": total, "accountMMRate": "0", "accountMMRateByMp": "0", "totalPerpUPL": "0",
            "totalWalletBalance": total, "accountLTV": "0", "totalMaintenanceMargin": "0",
            "totalMaintenanceMarginByMp": "0", "coin": coins,
        }]})

    async def coin_info(self, params: dict[str, str], api_key: str) -> web.Response:
        """GET /v5/asset/coin/query-info: ccxt's fetch_currencies (called by load_markets with a key)."""
        chains = {"BTC": ("BTC", "BTC"), "ETH": ("ETH", "ETH"), "SOL": ("SOL", "SOL")}
        codes = sorted({c for s in self.state.markets for c in s.split("/")} | set(self.state.balances))
        rows = []
        for code in codes:
            chain, chain_type = chains.get(code, ("ETH", "ERC20"))
            rows.append({"name": code, "coin": code, "remainAmount": "1000000", "chains": [{
                "chainType": chain_type, "confirmation": "6", "withdrawFee": "0.001", "depositMin": "0",
                "withdrawMin": "0.001", "chain": chain, "chainDeposit": "1", "chainWithdraw": "1",
                "minAccuracy": "8", "withdrawPercentageFee": "0", "contractAddress": "", "safeConfirmNumber": "6",
            }]})
        return _ok({"rows": rows})

    # ------------------------------------------------------------------ orders
    @staticmethod
    def _order_status(order: FakeOrder) -> str:
        if order.status == "open":
            return "PartiallyFilled" if order.filled else "New"
        if order.status == "closed":
            return "Filled"
        return "PartiallyFilledCanceled" if order.filled else "Cancelled"

    def _order_json(self, order: FakeOrder) -> dict[str, Any]:
        market = self.state.markets[order.symbol]
        sent = self._sent.get(order.id) or _Sent("", dec(order.amount), self.state.prices[order.symbol])
        is_open = order.status == "open"
        remaining = order.amount - order.filled if is_open else Decimal(0)
        fee_currency = order.fills[0].fee_currency if order.fills else market.quote
        updated = order.closed_at or (order.fills[-1].time if order.fills else order.created_at)
        return {
            "orderId": order.id,
            "orderLinkId": order.client_order_id or "",
            "blockTradeId": "",
            "symbol": order.symbol.replace("/", ""),
            "price": dec(order.price) if order.price is not None else "0",
            "qty": sent.qty,
            "side": order.side.capitalize(),
            "isLeverage": "0",
            "positionIdx": 0,
            "orderStatus": self._order_status(order),
            "cancelType": "CancelByUser" if order.status == "canceled" else "UNKNOWN",
            "rejectReason": "EC_NoError",
            "avgPrice": dec(order.average) if order.average is not None else "",
            "leavesQty": dec(remaining),
            "leavesValue": dec(remaining * (order.price or sent.base_price)),
            "cumExecQty": dec(order.filled),
            "cumExecValue": dec(order.cost),
            "cumExecFee": dec(order.fee),
            "cumFeeDetail": {fee_currency: dec(order.fee)} if order.fee else {},
            "timeInForce": "GTC" if order.order_type == "limit" else "IOC",
            "orderType": order.order_type.capitalize(),
            "stopOrderType": "",
            "orderIv": "",
            "marketUnit": sent.market_unit,
            "slippageToleranceType": "UNKNOWN",
            "slippageTolerance": "0",
            "triggerPrice": "0",
            "takeProfit": "0",
            "stopLoss": "0",
            "ocoTriggerBy": "OcoTriggerByUnknown",
            "tpLimitPrice": "0",
            "slLimitPrice": "0",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": 0,
            "triggerBy": "",
            "basePrice": dec(sent.base_price),
            "reduceOnly": False,
            "closeOnTrigger": False,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": _ms(order.created_at),
            "updatedTime": _ms(updated),
            "extraFees": "",
        }

    def _execution_json(self, order: FakeOrder, fill: FakeFill, leaves: Decimal) -> dict[str, Any]:
        sent = self._sent.get(order.id)
        return {
            "symbol": order.symbol.replace("/", ""),
            "orderType": order.order_type.capitalize(),
            "underlyingPrice": "",
            "orderLinkId": order.client_order_id or "",
            "side": order.side.capitalize(),
            "indexPrice": "",
            "orderId": order.id,
            "stopOrderType": "UNKNOWN",
            "leavesQty": dec(leaves),
            "execTime": _ms(fill.time),
            "feeCurrency": fill.fee_currency,
            "isMaker": False,
            "execFee": dec(fill.fee),
            "execFeeV2": "",
            "feeRate": dec(self.state.fee_rate),
            "execId": str(_EXEC_ID_BASE + fill.id),
            "tradeIv": "",
            "blockTradeId": "",
            "markPrice": dec(fill.price),
            "execPrice": dec(fill.price),
            "markIv": "",
            "orderQty": sent.qty if sent else dec(order.amount),
            "orderPrice": dec(order.price) if order.price is not None else "0",
            "execValue": dec(fill.cost),
            "execType": "Trade",
            "execQty": dec(fill.quantity),
            "closedSize": "",
            "seq": fill.id,
            "extraFees": "",
        }

    def _base_amount(self, market: FakeMarket, params: dict[str, str], is_market: bool,
                     side: str, qty: Decimal) -> tuple[str, Decimal] | web.Response:
        """The unit ``qty`` is in, and the order's size in the base coin; or Bybit's refusal."""
        unit = ""
        if is_market:
            # Bybit's default for a spot market buy is an amount of the quote coin to spend.
            unit = params.get("marketUnit") or ("quoteCoin" if side == "buy" else "baseCoin")
            if unit not in ("baseCoin", "quoteCoin"):
                return _error(170130, "Data sent for paramter 'marketUnit' is not valid.")
        if unit == "quoteCoin":
            if not _on_step(qty, _QUOTE_PRECISION):
                return _error(170148, "Market order amount decimal too long.")
            if qty < market.min_cost:
                return _error(170140, "Order value exceeded lower limit.")
            price = self.state.prices[market.symbol]
            return unit, (qty / price).quantize(market.amount_step, rounding=ROUND_DOWN)
        if not _on_step(qty, market.amount_step):
            return _error(170137, "Order quantity has too many decimals.")
        return unit, qty

    async def create_order(self, params: dict[str, str], api_key: str) -> web.Response:
        """POST /v5/order/create: answers the order's ids only, as Bybit does."""
        if params.get("category") != "spot":
            return _error(10001, "params error: category only support spot here")
        symbol = self._symbol_by_id.get(params.get("symbol", ""))
        if symbol is None:
            return _error(*_ERRORS["unknown_symbol"])
        side = {"Buy": "buy", "Sell": "sell"}.get(params.get("side", ""))
        if side is None:
            return _error(170117, "Invalid side.")
        order_type = {"Market": "market", "Limit": "limit"}.get(params.get("orderType", ""))
        if order_type is None:
            return _error(170116, "Invalid orderType.")
        qty = finite_decimal(params.get("qty"))
        if qty is None or qty <= 0:
            return _error(170130, "Data sent for paramter 'qty' is not valid.")
        link_id = params.get("orderLinkId") or None
        if link_id is not None:
            if not _ORDER_LINK_ID.fullmatch(link_id):
                return _error(170130, "Data sent for paramter 'orderLinkId' is not valid.")
            if self.orders_with_client_id(link_id):
                return _error(*_ERRORS["duplicate_order"])
        market = self.state.markets[symbol]
        price = None
        if order_type == "limit":
            price = finite_decimal(params.get("price"))
            if price is None or price <= 0:
                return _error(170130, "Data sent for paramter 'price' is not valid.")
            if not _on_step(price, market.price_step):
                return _error(170134, "Order price has too many decimals.")
        sized = self._base_amount(market, params, order_type == "market", side, qty)
        if isinstance(sized, web.Response):
            return sized
        unit, amount = sized
        last = self.state.prices[symbol]
        if amount < market.min_amount:
            return _error(*_ERRORS["invalid_order"])
        if unit != "quoteCoin" and amount * (price or last) < market.min_cost:
            return _error(170140, "Order value exceeded lower limit.")
        order_id = str(_ORDER_ID_BASE + self.state.next_number())
        try:
            order = self.state.place(symbol, side, order_type, amount, price, link_id, order_id)
        except EngineError as exc:
            return _error(*_ERRORS.get(exc.kind, (170130, "Data sent for paramter is not valid.")))
        self._sent[order.id] = _Sent(unit, params["qty"], last)
        return _ok({"orderId": order.id, "orderLinkId": order.client_order_id or ""})

    async def cancel_order(self, params: dict[str, str], api_key: str) -> web.Response:
        """POST /v5/order/cancel (by orderId or orderLinkId): answers the order's ids only."""
        order = self.state.find(order_id=params.get("orderId") or None,
                                client_order_id=params.get("orderLinkId") or None)
        if order is None or order.status != "open" or order.symbol.replace("/", "") != params.get("symbol"):
            return _error(*_ERRORS["unknown_order"])
        self.state.cancel(order_id=order.id)
        return _ok({"orderId": order.id, "orderLinkId": order.client_order_id or ""})

    def _by_id(self, params: dict[str, str]) -> list[FakeOrder] | None:
        """The order an orderId or orderLinkId asks for (the ids take priority over every other
        filter), or None when neither was given."""
        order_id, link_id = params.get("orderId") or None, params.get("orderLinkId") or None
        if order_id is None and link_id is None:
            return None
        order = self.state.find(order_id=order_id) if order_id else self.state.find(client_order_id=link_id)
        if order is None or (order_id is None and not self.state.listed(order)):
            return []
        if order.status != "open" and not self.state.closed_listed:
            return []
        return [order]

    def _listing(self, orders: list[FakeOrder], params: dict[str, str]) -> web.Response:
        limit = int(params.get("limit") or self.listing_page)
        newest_first = sorted(orders, key=lambda o: o.created_at, reverse=True)[:limit]
        return _ok({"category": "spot", "list": [self._order_json(o) for o in newest_first],
                    "nextPageCursor": ""})

    def _matching_symbol(self, params: dict[str, str]) -> list[FakeOrder]:
        wanted = params.get("symbol")
        base = params.get("baseCoin")
        return [
            o for o in self.state.orders
            if (wanted is None or o.symbol.replace("/", "") == wanted)
            and (base is None or o.symbol.split("/")[0] == base)
        ]

    async def realtime_orders(self, params: dict[str, str], api_key: str) -> web.Response:
        """GET /v5/order/realtime: open orders; by orderId/orderLinkId the order whatever its status
        (UTA keeps the last 500 closed ones here); openOnly=1 the recent closed ones."""
        if params.get("category") != "spot":
            return _error(10001, "params error: category only support spot here")
        by_id = self._by_id(params)
        if by_id is not None:
            return self._listing(by_id, params)
        if params.get("openOnly", "0") == "1":
            closed = [o for o in self._matching_symbol(params) if o.status != "open"]
            return self._listing(closed if self.state.closed_listed else [], params)
        return self._listing([o for o in self._matching_symbol(params) if o.status == "open"], params)

    async def order_history(self, params: dict[str, str], api_key: str) -> web.Response:
        """GET /v5/order/history: closed orders (every closed status unless orderStatus names one)."""
        if params.get("category") != "spot":
            return _error(10001, "params error: category only support spot here")
        by_id = self._by_id(params)
        candidates = by_id if by_id is not None else self._matching_symbol(params)
        wanted_status = params.get("orderStatus")
        orders = [
            o for o in candidates
            if (self._order_status(o) == wanted_status if wanted_status else self._order_status(o) in _CLOSED_STATUSES)
            and (o.status == "open" or self.state.closed_listed)
        ]
        return self._listing(orders, params)

    async def executions(self, params: dict[str, str], api_key: str) -> web.Response:
        """GET /v5/execution/list: the account's trades, newest first; fees are the engine's (a buy's
        in the coin it buys)."""
        if params.get("category") != "spot":
            return _error(10001, "params error: category only support spot here")
        order_id, link_id = params.get("orderId") or None, params.get("orderLinkId") or None
        if order_id is not None or link_id is not None:
            found = self.state.find(order_id=order_id) if order_id else self.state.find(client_order_id=link_id)
            orders = [found] if found is not None else []
        else:
            orders = self._matching_symbol(params)
        rows = []
        for order in orders:
            leaves = order.amount
            for fill in order.fills:
                leaves -= fill.quantity
                rows.append(self._execution_json(order, fill, leaves))
        rows.sort(key=lambda row: (int(row["execTime"]), row["seq"]), reverse=True)
        limit = int(params.get("limit") or 50)
        return _ok({"category": "spot", "list": rows[:limit], "nextPageCursor": ""})


@asynccontextmanager
async def start_fake_bybit(
    state: ExchangeState | None = None,
    *,
    api_key: str = "bybitTestKey0123456",
    secret: str = "bybitTestSecret0123456789abcdefABCDEF",
    hang_seconds: float = 3.0,
) -> AsyncIterator[FakeBybit]:
    """A running fake Bybit v5 spot API (unified account) on 127.0.0.1 (random port)."""
    fake = FakeBybit(state or default_state("USDT"), api_key, secret, hang_seconds)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
