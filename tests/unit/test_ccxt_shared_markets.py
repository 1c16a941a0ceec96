"""SharedMarkets' single flight, with stand-in clients (the real ccxt classes against the fake
servers: tests/integration/test_ccxt_shared_markets.py): a cancelled or failed load leaves the
waiting clients to load through their own, and what is shared never carries a client's keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.common.exchanges.ccxt_shared_markets import SharedMarkets, market_source

KEY = ("kraken", None, False)


class StandInClient:
    """The attributes and the two methods of a ccxt client that sharing touches."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.id = "kraken"
        self.apiKey = f"key-of-{name}"
        self.options: dict[str, Any] = {"marketHelperProps": ["marketsByAltname"], "marketsByAltname": None}
        for attribute in ("markets", "markets_by_id", "symbols", "ids", "currencies", "currencies_by_id",
                          "baseCurrencies", "quoteCurrencies", "codes"):
            setattr(self, attribute, None)

    def load(self) -> None:
        self.markets = {"BTC/USD": {"loaded_by": self.name}}
        self.markets_by_id = {"XXBTZUSD": [self.markets["BTC/USD"]]}
        self.options["marketsByAltname"] = {"XBTUSD": self.markets["BTC/USD"]}

    @staticmethod
    def safe_list(d: dict[str, Any], key: str, default: list[str]) -> list[str]:
        value = d.get(key)
        return value if isinstance(value, list) else default

    def set_markets_from_exchange(self, source: Any) -> None:
        self.markets, self.markets_by_id = source.markets, source.markets_by_id
        for helper in source.options["marketHelperProps"]:
            self.options[helper] = source.options[helper]


async def test_a_cancelled_load_leaves_the_waiting_client_to_load_through_its_own() -> None:
    shared = SharedMarkets()
    first, second = StandInClient("first"), StandInClient("second")
    started = asyncio.Event()

    async def never_answers() -> None:
        started.set()
        await asyncio.Event().wait()

    async def loads() -> None:
        second.load()

    loading = asyncio.create_task(shared.share_into(KEY, first, never_answers))
    await started.wait()
    waiting = asyncio.create_task(shared.share_into(KEY, second, loads))
    await asyncio.sleep(0)
    loading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loading
    await waiting
    assert second.markets == {"BTC/USD": {"loaded_by": "second"}}
    third = StandInClient("third")
    await shared.share_into(KEY, third, loads)  # shared from now on: no load of its own
    assert third.markets is second.markets
    assert third.options["marketsByAltname"] is second.options["marketsByAltname"]
    assert shared.loads == 2


def test_what_is_shared_holds_the_markets_and_never_the_keys() -> None:
    client = StandInClient("owner")
    client.load()
    source = market_source(client)
    assert source.markets is client.markets
    assert source.options == {"marketHelperProps": ["marketsByAltname"], "marketsByAltname": client.options[
        "marketsByAltname"]}
    assert not hasattr(source, "apiKey")
    assert "key-of-owner" not in repr(vars(source))
