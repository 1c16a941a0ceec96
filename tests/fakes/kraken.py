"""A fake Kraken spot REST API (``/0/public/*``, ``/0/private/*``) good enough for ccxt's kraken class.

Asset and pair ids follow Kraken's quirks (XXBT, ZUSD, XXBTZUSD with altname XBTUSD), so ccxt's
own currency-code mapping is exercised. Private calls need an ``API-Key`` header equal to the
configured key; signatures are accepted without verification.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.engine import EngineError, ExchangeState, FakeOrder, default_state
from tests.fakes.server import FakeExchangeServer, RecordedRequest, dec

_ASSET_IDS = {"BTC": "XXBT", "ETH": "XETH", "USD": "ZUSD", "EUR": "ZEUR"}
_ALTNAMES = {"BTC": "XBT"}
_ERRORS = {
    "insufficient_funds": "EOrder:Insufficient funds",
    "invalid_order": "EOrder:Order minimum not met",
    "unknown_symbol": "EQuery:Unknown asset pair",
    "unknown_order": "EOrder:Unknown order",
    "duplicate_order": "EOrder:Invalid order",
}


def asset_id(code: str) -> str:
    return _ASSET_IDS.get(code, code)


def altname(code: str) -> str:
    return _ALTNAMES.get(code, code)


def _ok(result: Any) -> web.Response:
    return web.json_response({"error": [], "result": result})


def _error(message: str) -> web.Response:
    return web.json_response({"error": [message]})


class FakeKraken(FakeExchangeServer):
    order_path = "/0/private/AddOrder"
    key_header = "API-Key"
    private_paths = ("/0/private/",)
    taker_fee = "0.0026"
    listing_page = 50

    def __init__(self, state: ExchangeState, api_key: str, secret: str, hang_seconds: float = 3.0) -> None:
        super().__init__(state, api_key, secret, hang_seconds)
        self._pair_by_id = {self.pair_id(s): s for s in state.markets}
        self._pair_by_alt = {self.pair_altname(s): s for s in state.markets}

    @staticmethod
    def pair_id(symbol: str) -> str:
        base, quote = symbol.split("/")
        base_id, quote_id = asset_id(base), asset_id(quote)
        # Kraken glues legacy X/Z ids (XXBTZUSD) but uses altnames for newer assets (SOLUSD).
        if base_id.startswith("X") and len(base_id) == 4:
            return base_id + quote_id
        return altname(base) + altname(quote)

    @staticmethod
    def pair_altname(symbol: str) -> str:
        base, quote = symbol.split("/")
        return altname(base) + altname(quote)

    def rate_limit_response(self) -> web.Response:
        return _error("EAPI:Rate limit exceeded")

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        return dict(parse_qsl(request.body)).get("cl_ord_id")

    def routes(self, app: web.Application) -> None:
        public: dict[str, Any] = {
            "Time": self.time,
            "Assets": self.assets,
            "AssetPairs": self.asset_pairs,
            "Ticker": self.ticker,
        }
        private: dict[str, Any] = {
            "Balance": self.balance,
            "BalanceEx": self.balance_ex,
            "AddOrder": self.add_order,
            "OpenOrders": self.open_orders,
            "ClosedOrders": self.closed_orders,
            "QueryOrders": self.query_orders,
            "CancelOrder": self.cancel_order,
        }
        for name, handler in public.items():
            app.router.add_get(f"/0/public/{name}", handler)
        for name, handler in private.items():
            app.router.add_post(f"/0/private/{name}", self._private(handler))

    def _private(self, handler: Any) -> Any:
        async def checked(request: web.Request) -> web.Response:
            if self.reject_auth or request.headers.get("API-Key") != self.api_key:
                return _error("EAPI:Invalid key")
            if not request.headers.get("API-Sign"):
                return _error("EAPI:Invalid signature")
            form = dict(await request.post())
            response: web.Response = await handler({k: str(v) for k, v in form.items()})
            return response

        return checked

    # ------------------------------------------------------------------ public
    async def time(self, request: web.Request) -> web.Response:
        now = int(time.time())
        return _ok({"unixtime": now, "rfc1123": ""})

    async def assets(self, request: web.Request) -> web.Response:
        codes = {c for s in self.state.markets for c in s.split("/")} | set(self.state.balances)
        return _ok({
            asset_id(code): {
                "aclass": "currency",
                "altname": altname(code),
                "decimals": 10 if code not in ("USD", "EUR") else 4,
                "display_decimals": 5 if code not in ("USD", "EUR") else 2,
                "status": "enabled",
            }
            for code in sorted(codes)
        })

    async def asset_pairs(self, request: web.Request) -> web.Response:
        result = {}
        for symbol, market in self.state.markets.items():
            result[self.pair_id(symbol)] = {
                "altname": self.pair_altname(symbol),
                "wsname": f"{altname(market.base)}/{altname(market.quote)}",
                "aclass_base": "currency",
                "base": asset_id(market.base),
                "aclass_quote": "currency",
                "quote": asset_id(market.quote),
                "lot": "unit",
                "cost_decimals": 5,
                "pair_decimals": -market.price_step.as_tuple().exponent,  # type: ignore[operator]
                "lot_decimals": -market.amount_step.as_tuple().exponent,  # type: ignore[operator]
                "lot_multiplier": 1,
                "leverage_buy": [],
                "leverage_sell": [],
                "fees": [[0, float(self.state.fee_rate * 100)], [50000, 0.24]],
                "fees_maker": [[0, float(self.state.fee_rate * 100)], [50000, 0.14]],
                "fee_volume_currency": "ZUSD",
                "margin_call": 80,
                "margin_stop": 40,
                "ordermin": dec(market.min_amount),
                "costmin": dec(market.min_cost),
                "tick_size": dec(market.price_step),
                "status": "online",
            }
        return _ok(result)

    async def ticker(self, request: web.Request) -> web.Response:
        wanted = request.query.get("pair")
        ids = wanted.split(",") if wanted else [self.pair_id(s) for s in self.state.markets]
        result = {}
        for pair in ids:
            symbol = self._pair_by_id.get(pair) or self._pair_by_alt.get(pair)
            if symbol is None:
                return _error("EQuery:Unknown asset pair")
            p = dec(self.state.prices[symbol])
            result[self.pair_id(symbol)] = {
                "a": [p, "1", "1.000"], "b": [p, "1", "1.000"], "c": [p, "0.1"],
                "v": ["10", "100"], "p": [p, p], "t": [10, 100], "l": [p, p], "h": [p, p], "o": p,
            }
        return _ok(result)

    # ------------------------------------------------------------------ private
    async def balance(self, form: dict[str, str]) -> web.Response:
        return _ok({asset_id(c): dec(v) for c, v in self.state.balances.items()})

    async def balance_ex(self, form: dict[str, str]) -> web.Response:
        return _ok({
            asset_id(c): {"balance": dec(v), "hold_trade": dec(self.state.locked(c))}
            for c, v in self.state.balances.items()
        })

    async def add_order(self, form: dict[str, str]) -> web.Response:
        symbol = self._pair_by_id.get(form.get("pair", "")) or self._pair_by_alt.get(form.get("pair", ""))
        if symbol is None:
            return _error("EQuery:Unknown asset pair")
        order_id = "O" + secrets.token_hex(3).upper() + "-" + secrets.token_hex(3).upper() + "-" + str(
            self.state.next_number()
        )
        price = Decimal(form["price"]) if "price" in form else None
        # The fee's currency: fcib (base) or fciq (quote) as asked, else Kraken's default: a sell's
        # fee in the base, a buy's in the quote (AddOrder's oflags).
        flags = set(form.get("oflags", "").split(","))
        fee_in_base = "fcib" in flags or (form["type"] == "sell" and "fciq" not in flags)
        try:
            order = self.state.place(
                symbol, form["type"], form["ordertype"], Decimal(form["volume"]), price,
                form.get("cl_ord_id"), order_id, fee_in_base,
            )
        except EngineError as exc:
            return _error(_ERRORS.get(exc.kind, "EGeneral:Invalid arguments"))
        descr = f"{order.side} {dec(order.amount)} {self.pair_altname(symbol)} @ {order.order_type}"
        if price is not None:
            descr += f" {dec(price)}"
        return _ok({"descr": {"order": descr}, "txid": [order.id]})

    def _description(self, order: FakeOrder) -> str:
        return f"{order.side} {dec(order.amount)} {self.pair_altname(order.symbol)} @ {order.order_type}"

    def _order_json(self, order: FakeOrder) -> dict[str, Any]:
        return {
            "refid": None,
            "userref": 0,
            "cl_ord_id": order.client_order_id,
            "status": order.status,
            "opentm": order.created_at,
            "closetm": order.closed_at,
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": self.pair_altname(order.symbol),
                "type": order.side,
                "ordertype": order.order_type,
                "price": dec(order.price) if order.price is not None else "0",
                "price2": "0",
                "leverage": "none",
                "order": self._description(order),
                "close": "",
            },
            "vol": dec(order.amount),
            "vol_exec": dec(order.filled),
            "cost": dec(order.cost),
            "fee": dec(order.fee),
            "price": dec(order.average) if order.average is not None else "0",
            "stopprice": "0",
            "limitprice": "0",
            "misc": "",
            "oflags": "fcib" if order.fee_in_base else "fciq",
        }

    def _matching(self, form: dict[str, str], statuses: tuple[str, ...]) -> dict[str, Any]:
        wanted = form.get("cl_ord_id")
        return {
            o.id: self._order_json(o)
            for o in self.state.orders
            if o.status in statuses
            and (wanted is None or o.client_order_id == wanted)
            and (o.status == "open" or self.state.closed_listed)
            and (wanted is None or self.state.listed(o))
        }

    async def open_orders(self, form: dict[str, str]) -> web.Response:
        return _ok({"open": self._matching(form, ("open",))})

    async def closed_orders(self, form: dict[str, str]) -> web.Response:
        closed = self._matching(form, ("closed", "canceled"))
        # One page: the newest 50, as Kraken answers (``count`` is how many there are in all).
        newest = dict(list(reversed(closed.items()))[:self.listing_page])
        return _ok({"closed": newest, "count": len(closed)})

    async def query_orders(self, form: dict[str, str]) -> web.Response:
        result = {}
        for txid in form.get("txid", "").split(","):
            order = self.state.find(order_id=txid)
            if order is None:
                return _error("EOrder:Unknown order")
            result[order.id] = self._order_json(order)
        return _ok(result)

    async def cancel_order(self, form: dict[str, str]) -> web.Response:
        try:
            self.state.cancel(order_id=form.get("txid"), client_order_id=form.get("cl_ord_id"))
        except EngineError:
            return _error("EOrder:Unknown order")
        return _ok({"count": 1, "pending": False})


@asynccontextmanager
async def start_fake_kraken(
    state: ExchangeState | None = None,
    *,
    api_key: str = "kraken-test-key-0123456789",
    secret: str = "a3Jha2VuLXRlc3Qtc2VjcmV0LXZhbHVlLWZvci10ZXN0cw==",
    hang_seconds: float = 3.0,
) -> AsyncIterator[FakeKraken]:
    """A running fake Kraken on 127.0.0.1 (random port); ``secret`` must be base64, as Kraken's is."""
    fake = FakeKraken(state or default_state("USD", Decimal("0.0026")), api_key, secret, hang_seconds)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
