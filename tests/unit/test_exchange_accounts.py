"""ExchangeAccounts keeps at most ``max_open`` exchange instances idle: beyond that the least
recently used one with no call in flight is closed at once, so memory stays bounded however many
accounts a process serves, and an instance in use is never closed under its caller."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from services.common.exchanges.accounts import Connection, ExchangeAccounts
from services.common.settings import ServiceSettings


class Recorder:
    """Stands in for an exchange instance: something to close."""

    closing_now = 0  # closes under way at once, across instances
    most_closing_at_once = 0

    def __init__(self, name: str) -> None:
        self.exchange_id = "kraken"
        self.name = name
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        Recorder.closing_now += 1
        Recorder.most_closing_at_once = max(Recorder.most_closing_at_once, Recorder.closing_now)
        await asyncio.sleep(0)  # ccxt's close waits (a quarter of a second)
        Recorder.closing_now -= 1


class Accounts(ExchangeAccounts):
    """The real LRU logic over stand-in connections and exchanges (no database, no network)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(pool=None, **kwargs)  # type: ignore[arg-type]
        self.opened: dict[str, list[Recorder]] = {}

    async def connection(self, connection_id: str) -> Connection:
        return Connection(connection_id, "u", "kraken", None, False, None, None)

    def _open(self, conn: Connection) -> Recorder:  # type: ignore[override]
        self.opened.setdefault(conn.id, []).append(Recorder(conn.id))
        return self.opened[conn.id][-1]

    async def touch(self, *connection_ids: str) -> None:
        for connection_id in connection_ids:
            async with self.use(connection_id):
                pass
        await asyncio.sleep(0)  # let scheduled closes run

    def closed(self) -> set[str]:
        return {r.name for instances in self.opened.values() for r in instances if r.closed}


async def test_the_least_recently_used_idle_instance_is_closed_at_once_beyond_the_cap() -> None:
    accounts = Accounts(max_open=2)
    await accounts.touch("a", "b", "a")  # b is now the least recently used
    await accounts.touch("c")
    assert accounts.open_count == 2
    assert accounts.closed() == {"b"}
    # An evicted account is opened afresh when it trades again.
    await accounts.touch("b")
    assert len(accounts.opened["b"]) == 2 and accounts.opened["b"][1] is not accounts.opened["b"][0]
    assert accounts.open_count == 2 and accounts.closed() == {"b", "a"}
    await accounts.close()
    assert all(r.closed for instances in accounts.opened.values() for r in instances)


async def test_an_instance_in_use_is_neither_closed_nor_duplicated_by_eviction() -> None:
    accounts = Accounts(max_open=1)
    async with accounts.use("a") as in_use:
        await accounts.touch("b", "c")  # a is the least recently used, but busy
        assert not in_use.closed  # type: ignore[attr-defined]
        async with accounts.use("a") as again:
            assert again is in_use  # the same instance (one rate limiter per account)
        assert accounts.closed() == {"b"}  # the idle one went instead
    # Once a's call ends, the next eviction may take it.
    await accounts.touch("d")
    assert accounts.closed() == {"a", "b", "c"} and accounts.open_count == 1
    await accounts.close()


async def test_many_accounts_passing_through_leave_nothing_behind() -> None:
    accounts = Accounts(max_open=3)
    for n in range(200):
        await accounts.touch(f"acct-{n}")
        # Each evicted instance is closed as it goes, none is kept waiting out a grace period.
        assert len(accounts.closed()) == max(0, n + 1 - 3)
    assert accounts.open_count == 3
    await accounts.close()


def test_the_cap_is_the_exchange_clients_max_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXCHANGE_CLIENTS_MAX", raising=False)
    assert ExchangeAccounts.from_settings(None, ServiceSettings()).max_open == 2000  # type: ignore[arg-type]
    monkeypatch.setenv("EXCHANGE_CLIENTS_MAX", "50")
    assert ExchangeAccounts.from_settings(None, ServiceSettings()).max_open == 50  # type: ignore[arg-type]
    monkeypatch.setenv("EXCHANGE_CLIENTS_MAX", "0")
    with pytest.raises(pydantic.ValidationError, match="exchange_clients_max"):
        ServiceSettings()


async def test_shutdown_closes_every_instance_together() -> None:
    # ccxt waits a quarter of a second in each close: one by one, a process holding 1,000
    # accounts would take four minutes to stop.
    accounts = Accounts(max_open=100)
    await accounts.touch(*(f"account-{n}" for n in range(50)))
    Recorder.most_closing_at_once = 0
    await accounts.close()
    assert len(accounts.closed()) == 50 and accounts.open_count == 0
    assert Recorder.most_closing_at_once == 50
