"""Gate's account mode through ccxt's real gate class and CcxtExchange, against the fake Gate.

A Gate API key opens a classic account (``/account/detail``'s key mode 1) or a unified one (mode 2),
whose orders, look-ups and balances ccxt sends with ``account=unified`` instead of ``spot``. ccxt
reads the mode at every private call until it knows it, but takes a failed read (a timeout, a 5xx)
for a classic account for the client's life. A unified account's client made after a restart could
then look for an order its run placed with account=spot, where Gate may not list it, and send it
again. The adapter
reads the mode itself before the client's first call (``ACCOUNT_SETTINGS_READS``), and a failed read
is made again at the next call. A unified account's own endpoints are not modelled (no Gate document
of them is in reach here): these tests stop at the mode and the account ccxt names in its requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from services.common.exchanges import port
from tests.fakes.clients import FakeSession, fake_session, order
from tests.fakes.gate import FakeGate

pytestmark = pytest.mark.integration

DETAIL = "/api/v4/account/detail"


@pytest.fixture
async def gate() -> AsyncIterator[FakeSession]:
    async with fake_session("gate") as session:
        yield session
        assert session.fake.unknown_paths == []


def fake_gate(session: FakeSession) -> FakeGate:
    assert isinstance(session.fake, FakeGate)
    return session.fake


def account_named_by_an_order(session: FakeSession) -> str:
    """The account ccxt names in a spot order it would send now (its request, not sent)."""
    request = session.exchange.client.create_order_request("BTC/USDT", "limit", "sell", 0.01, 60000)
    return str(request["account"])


async def test_ccxt_takes_a_failed_mode_read_for_a_classic_account_for_good(gate: FakeSession) -> None:
    # The defect behind the adapter's own read, on ccxt's raw client: a unified account whose first
    # read fails is classic from then on, and is never asked again.
    fake, client = fake_gate(gate), gate.exchange.client
    fake.unified = True
    fake.http_500_next(path=DETAIL)
    assert await client.load_unified_status() is False
    assert await client.load_unified_status() is False
    assert len([r for r in fake.requests if r.path == DETAIL]) == 1
    await gate.exchange.load_markets()
    assert account_named_by_an_order(gate) == "spot"


@pytest.mark.parametrize("fault", ["http_500", "timeout"])
async def test_a_failed_mode_read_is_passing_trouble_and_asked_again(gate: FakeSession, fault: str) -> None:
    fake, exchange = fake_gate(gate), gate.exchange
    fake.unified = True
    fake.fail_next(fault, 1, DETAIL)
    with pytest.raises(port.RetryLater):
        await exchange.load_markets()
    assert exchange.client.options.get("unifiedAccount") is None, "not taken for a classic account"
    assert not [r for r in fake.requests if r.path != DETAIL], "nothing else was asked before the mode"
    await exchange.load_markets()  # read again, answered
    assert exchange.client.options["unifiedAccount"] is True
    assert account_named_by_an_order(gate) == "unified"
    assert len([r for r in fake.requests if r.path == DETAIL]) == 2


async def test_a_classic_account_trades_in_the_spot_account_and_is_named_by_the_same_read(gate: FakeSession) -> None:
    fake, exchange = fake_gate(gate), gate.exchange
    fake.fail_next("http_500", 1, DETAIL)
    with pytest.raises(port.RetryLater):
        await exchange.fetch_balance()
    sold = await exchange.create_order(order(gate, side="sell", amount="0.01"))
    balances = await exchange.fetch_balance()
    assert sold.status == "closed" and balances["BTC"].total == Decimal("0.49")  # 0.5 - 0.01
    assert exchange.client.options["unifiedAccount"] is False
    assert account_named_by_an_order(gate) == "spot"
    # The mode read names the account too: no second read of it after the first balance.
    assert exchange.account_uid == str(fake.uid)
    assert len([r for r in fake.requests if r.path == DETAIL]) == 2  # the failed read and its retry


async def test_a_key_that_may_not_read_its_accounts_detail_trades_as_a_classic_account(gate: FakeSession) -> None:
    # A refusal is an answer, not passing trouble: the account is taken for a classic one, as ccxt
    # takes it, and it trades; it is known by its API key alone.
    fake, exchange = fake_gate(gate), gate.exchange
    fake.detail_forbidden = True
    sold = await exchange.create_order(order(gate, side="sell", amount="0.01"))
    balances = await exchange.fetch_balance()
    assert sold.status == "closed" and balances["BTC"].total == Decimal("0.49")
    assert exchange.client.options["unifiedAccount"] is False and exchange.account_uid is None
    assert len([r for r in fake.requests if r.path == DETAIL]) == 1, "refused once: not asked again"
