"""What every fake exchange server shares: an aiohttp app on 127.0.0.1, request recording, faults.

Faults are queued and consumed by the next matching requests (optionally only those whose path
contains ``path``):
- ``timeout_next(n)``: the request is executed, then the answer is held past the client's timeout;
- ``http_500_next(n)``: answered 500 without executing;
- ``rate_limit_next(n)``: answered the dialect's rate-limit error without executing;
- ``drop_response_next()``: executed, then the connection is closed without an answer;
- ``fail_next(kind, n, path, after=k)``: any of these kinds, once ``k`` matching requests have passed.
Standing conditions: ``insufficient_funds``, ``partial_fill(ratio)``, ``reject_auth``,
``state.closed_listed`` (False: look-ups no longer find orders that are not open), and
``state.listing_delay`` (seconds before look-ups by client order id find a new order).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from services.common.devstack import free_port
from tests.fakes.engine import ExchangeState, FakeOrder

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    host: str


@dataclass
class _Fault:
    kind: str  # timeout|http_500|rate_limit|drop
    remaining: int
    path: str | None
    skip: int = 0  # matching requests answered normally before the fault starts


class FakeExchangeServer:
    """Base class: dialects add routes and say how to answer a rate limit."""

    order_path = "/order"  # default path filter of drop_response_next
    # What the shared tests of every dialect (tests/integration/test_ccxt_fakes.py) check on the wire:
    key_header = ""  # the header that carries the API key on private calls
    private_paths: tuple[str, ...] = ()  # path prefixes of the private (signed) endpoints
    taker_fee = "0.001"  # the taker fee ccxt reports for the fake's markets
    min_cost: str | None = "5"  # the minimum order value ccxt reports (None: the exchange states none)
    passphrase: str | None = None  # the API key's passphrase, on exchanges that have one (OKX)
    listing_page: int | None = None  # orders a closed-order listing answers at most (its default page)
    # The exchange charges a fee in the currency the order receives (a buy's in the base): set on
    # the state the fake serves (ExchangeState.fee_in_received).
    fee_in_received = False

    def __init__(self, state: ExchangeState, api_key: str, secret: str, hang_seconds: float = 3.0) -> None:
        self.state = state
        state.fee_in_received = self.fee_in_received
        self.api_key = api_key
        self.secret = secret
        self.hang_seconds = hang_seconds
        self.requests: list[RecordedRequest] = []
        self.reject_auth = False
        self.unknown_paths: list[str] = []
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._hanging: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ faults
    def timeout_next(self, n: int = 1, path: str | None = None) -> None:
        self.fail_next("timeout", n, path)

    def http_500_next(self, n: int = 1, path: str | None = None, *, after: int = 0) -> None:
        """The next ``n`` requests to ``path`` fail with a 500, once ``after`` more have been answered."""
        self.fail_next("http_500", n, path, after=after)

    def fail_next(self, kind: str, n: int = 1, path: str | None = None, *, after: int = 0) -> None:
        """Any fault (timeout, http_500, rate_limit, drop) for the next ``n`` requests to ``path``,
        once ``after`` more have been answered."""
        self._faults.append(_Fault(kind, n, path, after))

    def rate_limit_next(self, n: int = 1, path: str | None = None) -> None:
        self.fail_next("rate_limit", n, path)

    @property
    def faults_left(self) -> int:
        """Faults set up that no request has met yet."""
        return sum(f.remaining for f in self._faults)

    def drop_response_next(self, path: str | None = None) -> None:
        self.fail_next("drop", 1, path or self.order_path)

    @property
    def insufficient_funds(self) -> bool:
        return self.state.force_insufficient_funds

    @insufficient_funds.setter
    def insufficient_funds(self, value: bool) -> None:
        self.state.force_insufficient_funds = value

    def partial_fill(self, ratio: Decimal | str) -> None:
        self.state.fill_ratio = Decimal(str(ratio))

    def orders_with_client_id(self, client_order_id: str) -> list[FakeOrder]:
        return [o for o in self.state.orders if o.client_order_id == client_order_id]

    # ------------------------------------------------------------------ server
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def named_account(self) -> str | None:
        """The account id the exchange names to ccxt (check_connection returns it), if any."""
        return None

    def sent_client_order_id(self, request: RecordedRequest) -> str | None:
        """The client order id a recorded order request carried, under the dialect's own name."""
        raise NotImplementedError

    def rate_limit_response(self) -> web.Response:
        raise NotImplementedError

    def not_found_response(self, request: web.Request) -> web.Response:
        return web.json_response({"error": f"no such endpoint {request.path}"}, status=404)

    def _take_fault(self, path: str) -> str | None:
        for fault in self._faults:
            if fault.remaining > 0 and (fault.path is None or fault.path in path):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.remaining -= 1
                kind = fault.kind
                self._faults = [f for f in self._faults if f.remaining > 0]
                return kind
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.text() if request.can_read_body else ""
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), dict(request.headers), body,
                request.host,
            )
        )
        fault = self._take_fault(request.path)
        if fault == "http_500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "rate_limit":
            return self.rate_limit_response()
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            self.unknown_paths.append(f"{request.method} {request.path}")
            return self.not_found_response(request)
        if fault == "timeout":
            await asyncio.sleep(self.hang_seconds)
        elif fault == "drop":
            assert request.transport is not None
            request.transport.abort()  # executed, never answered
        return response

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self._port = free_port()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def finite_decimal(value: object) -> Decimal | None:
    """A number as a request sent it (a string, or a JSON number), or None where it is none."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def json_body_field(request: RecordedRequest, name: str) -> str | None:
    """Field ``name`` of a recorded request's JSON body (an object, or a one-order batch of one)."""
    body = json.loads(request.body or "{}")
    first = body[0] if isinstance(body, list) and body else body
    value = first.get(name) if isinstance(first, dict) else None
    return str(value) if value is not None else None


def dec(value: Decimal) -> str:
    """A plain decimal string (no exponent), as exchanges send them."""
    return format(value.normalize(), "f") if value else "0"
