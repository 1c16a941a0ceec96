"""ExchangeAccounts keeps at most ``max_open`` exchange instances, closing the least recently used
after a grace period: memory stays bounded however many accounts a process serves."""

from __future__ import annotations

import asyncio
from typing import Any

from services.common.exchanges.accounts import Connection, ExchangeAccounts


class Recorder:
    """Stands in for a ccxt instance: something to close."""

    def __init__(self, name: str, exchange_id: str = "kraken") -> None:
        self.exchange_id = exchange_id
        self.name = name
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Accounts(ExchangeAccounts):
    """The real LRU logic over stand-in connections and exchanges (no database, no network)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(pool=None, **kwargs)  # type: ignore[arg-type]
        self.opened: dict[str, Recorder] = {}

    async def connection(self, connection_id: str) -> Connection:
        return Connection(connection_id, "u", "paper", None, False, connection_id, None)

    def _open(self, conn: Connection) -> Recorder:  # type: ignore[override]
        self.opened[conn.id] = Recorder(conn.id, "paper" if conn.id.startswith("paper") else "kraken")
        return self.opened[conn.id]


async def test_the_least_recently_used_instance_is_closed_beyond_the_cap() -> None:
    accounts = Accounts(max_open=2, close_grace_seconds=0)
    a = await accounts.exchange("a")
    first_b = await accounts.exchange("b")
    assert await accounts.exchange("a") is a  # touched: now b is the least recently used
    await accounts.exchange("c")
    assert accounts.open_count == 2
    await asyncio.sleep(0.01)  # the grace period (0 here) passes
    assert accounts.opened["b"].closed and not accounts.opened["a"].closed and not accounts.opened["c"].closed
    # An evicted account is opened afresh when it trades again.
    b_again = await accounts.exchange("b")
    assert b_again is not first_b and accounts.open_count == 2


async def test_an_evicted_instance_stays_open_during_its_grace_period() -> None:
    accounts = Accounts(max_open=1, close_grace_seconds=60)
    await accounts.exchange("a")
    await accounts.exchange("b")
    await asyncio.sleep(0.01)
    assert not accounts.opened["a"].closed  # a call in flight on it may still finish
    await accounts.close()


async def test_an_evicted_paper_account_is_dropped_at_once_with_nothing_left_waiting() -> None:
    accounts = Accounts(max_open=1, close_grace_seconds=60)
    for n in range(50):
        await accounts.exchange(f"paper-{n}")
    assert accounts.open_count == 1
    assert len(accounts._closing) == 0  # no grace-period task per evicted paper account
    await accounts.exchange("real")
    await accounts.exchange("paper-again")  # evicts the real one
    assert len(accounts._closing) == 1  # a real exchange instance still waits out its grace
    await accounts.close()
