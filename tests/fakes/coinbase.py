"""A minimal fake of Coinbase Advanced Trade's create-order and list-accounts endpoints that records
what it receives.

Enough to prove how the client order id travels; markets are given to ccxt directly by the test.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from services.common.devstack import free_port


class FakeCoinbase:
    def __init__(self) -> None:
        self.orders: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""
        # The portfolio the API key is scoped to: every account listed names it.
        self.portfolio_id = str(uuid.uuid4())
        self.balances = {"BTC": "0.5", "USD": "1000"}
        self.page_size = 1  # accounts per page, so that ccxt follows the cursor

    async def list_accounts(self, request: web.Request) -> web.Response:
        """GET /api/v3/brokerage/accounts, one page per cursor."""
        self.headers.append(dict(request.headers))
        start = int(request.query.get("cursor") or 0)
        listed = list(self.balances.items())[start:start + self.page_size]
        more = start + self.page_size < len(self.balances)
        return web.json_response({
            "accounts": [{
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.portfolio_id}/{currency}")),
                "name": f"{currency} Wallet", "currency": currency,
                "available_balance": {"value": amount, "currency": currency},
                "default": True, "active": True, "type": "ACCOUNT_TYPE_CRYPTO", "ready": True,
                "hold": {"value": "0", "currency": currency}, "retail_portfolio_id": self.portfolio_id,
            } for currency, amount in listed],
            "has_next": more, "cursor": str(start + self.page_size) if more else "", "size": len(listed),
        })

    async def create_order(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        self.orders.append(body)
        self.headers.append(dict(request.headers))
        return web.json_response({
            "success": True,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": str(uuid.uuid4()),
            "success_response": {
                "order_id": str(uuid.uuid4()),
                "product_id": body["product_id"],
                "side": body["side"],
                "client_order_id": body["client_order_id"],
            },
            "order_configuration": body.get("order_configuration", {}),
        })


@asynccontextmanager
async def start_fake_coinbase() -> AsyncIterator[FakeCoinbase]:
    fake = FakeCoinbase()
    app = web.Application()
    app.router.add_post("/api/v3/brokerage/orders", fake.create_order)
    app.router.add_get("/api/v3/brokerage/accounts", fake.list_accounts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def coinbase_market(base: str = "BTC", quote: str = "USD") -> dict[str, Any]:
    """A ccxt market structure for Coinbase, as its load_markets would build it."""
    return {
        "id": f"{base}-{quote}", "symbol": f"{base}/{quote}", "base": base, "quote": quote,
        "baseId": base, "quoteId": quote, "type": "spot", "spot": True, "margin": False,
        "swap": False, "future": False, "option": False, "contract": False, "active": True,
        "taker": 0.006, "maker": 0.004,
        "precision": {"amount": 0.00000001, "price": 0.01},
        "limits": {"amount": {"min": 0.00001, "max": None}, "cost": {"min": 1, "max": None},
                   "price": {"min": None, "max": None}, "leverage": {"min": None, "max": None}},
        "info": {},
    }
