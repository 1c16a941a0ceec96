"""An exchange account has one connection (migration 011's ``account_ref``).

The rules that keep an account to one live portfolio and one live run at a time key on the
connection, so a second connection to the same account (the same paper account, the same API key
at the same address, or another key of an account the exchange names: migration 014) would get
around them.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from services.api.connection_refs import name_accounts
from services.common.exchanges.account_ref import exchange_account_ref, exchange_account_uid_ref, paper_account_ref
from services.common.exchanges.accounts import ExchangeAccounts, SharedAccount
from services.common.secrets import Credentials
from tests.fakes.clients import STARTERS
from tests.integration.test_api_harness import Api, api_fixture, paper_account  # noqa: F401

pytestmark = pytest.mark.integration


async def _connections(api: Api, user_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await api.pool.fetch(
        "SELECT id, account_ref FROM exchange_connections WHERE user_id = $1 ORDER BY created_at", user_id
    )
    return rows


async def test_a_paper_account_is_connected_once(api: Api) -> None:
    alice, bob = await api.user(with_connection=False), await api.user(with_connection=False)
    account = paper_account("shared")
    first = await alice.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": account, "label": "Main"})
    assert first.status_code == 201, first.text
    connection = first.json()["connection"]

    again = await alice.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": account, "label": "Copy"})
    assert again.status_code == 409, again.text
    assert again.json()["error"] == (
        f"paperAccount: this paper account is already connected as your connection {connection['id']} ('Main');"
        " use that one: an account has one connection, so that it has one live portfolio"
    )
    # Another user's paper account is not theirs to trade (nor to learn anything of but its name).
    taken = await bob.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": account})
    assert taken.status_code == 409 and "choose another name" in taken.text and connection["id"] not in taken.text
    assert [r["account_ref"] for r in await _connections(api, alice.id)] == [paper_account_ref(account)]
    assert await _connections(api, bob.id) == []
    own = await bob.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": paper_account("bob")})
    assert own.status_code == 201, own.text


async def test_an_exchange_account_is_connected_once_per_address(api: Api) -> None:
    alice, bob = await api.user(with_connection=False), await api.user(with_connection=False)
    key = f"KEY{uuid.uuid4().hex}"
    body = {"exchangeId": "kraken", "apiKey": key, "secret": "S3CR3T-VALUE-XYZ"}
    first = await alice.post("/api/v1/connections", {**body, "label": "Main"})
    assert first.status_code == 201, first.text

    again = await alice.post("/api/v1/connections", {**body, "label": "Copy", "secret": "another-secret-value"})
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error.startswith("apiKey: this exchange account (this API key at this address) is already connected as")
    assert first.json()["connection"]["id"] in error and key not in error
    taken = await bob.post("/api/v1/connections", body)
    assert taken.status_code == 409 and first.json()["connection"]["id"] not in taken.text
    # The same key at another address (a testnet, a fake server) is another account.
    elsewhere = await alice.post("/api/v1/connections", {**body, "apiUrl": "http://127.0.0.1:9"})
    assert elsewhere.status_code == 201, elsewhere.text
    refs = [r["account_ref"] for r in await _connections(api, alice.id)]
    assert refs == [
        exchange_account_ref("kraken", key, api_url=None, sandbox=False),
        exchange_account_ref("kraken", key, api_url="http://127.0.0.1:9", sandbox=False),
    ]
    assert all(key not in ref for ref in refs)


# Exchanges that name the account a key opens: in the balance answer (Binance's uid) or in one
# more read (OKX's account config, Bybit's API-key information).
NAMING_EXCHANGES = ["binance", "okx", "bybit", "gate", "kucoin", "bitget"]


def _verifying(api: Api) -> None:
    transport = api.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    transport.app.state.ctx.settings = api.settings.model_copy(update={"api_verify_connections": True})  # type: ignore[attr-defined]


def _key_body(exchange_id: str, fake: Any, key: str, **more: str) -> dict[str, str]:
    passphrase = {"passphrase": fake.passphrase} if fake.passphrase else {}
    return {"exchangeId": exchange_id, "apiKey": key, "secret": fake.secret, "apiUrl": fake.url, **passphrase, **more}


@pytest.mark.parametrize("exchange_id", NAMING_EXCHANGES)
async def test_a_second_api_key_of_an_account_the_exchange_names_is_the_same_account(
    api: Api, exchange_id: str
) -> None:
    # A checked connection records the account the exchange names, so a second key of the same
    # account is refused like the same key; the key-based name still stands for connections that
    # were not checked.
    alice, bob = await api.user(with_connection=False), await api.user(with_connection=False)
    _verifying(api)
    async with STARTERS[exchange_id]() as started:
        fake: Any = started
        fake.other_api_keys |= {"second-key-of-the-account-0123", "third-key-of-the-account-01234"}
        first_uid = fake.named_account()

        def body(key: str, label: str) -> dict[str, str]:
            return _key_body(exchange_id, fake, key, label=label)

        first = await alice.post("/api/v1/connections", body(fake.api_key, "Main"))
        assert first.status_code == 201, first.text
        main = first.json()["connection"]["id"]
        again = await alice.post("/api/v1/connections", body("second-key-of-the-account-0123", "Second key"))
        assert again.status_code == 409, again.text
        assert again.json()["error"].startswith(
            "apiKey: this exchange account (the exchange names it as the account of another API key) is already"
            f" connected as your connection {main} ('Main')"
        )
        taken = await bob.post("/api/v1/connections", body("third-key-of-the-account-01234", "Bob's"))
        assert taken.status_code == 409 and "another API key" in taken.text and main not in taken.text
        assert await _connections(api, bob.id) == []

        fake.uid = fake.uid + 1  # the key now opens another account: that one is free
        other = await alice.post("/api/v1/connections", body("second-key-of-the-account-0123", "Other"))
        assert other.status_code == 201, other.text
        second_uid = fake.named_account()
    refs = await api.pool.fetch(
        "SELECT account_ref, account_uid_ref FROM exchange_connections WHERE user_id = $1 ORDER BY created_at",
        alice.id,
    )
    assert [r["account_uid_ref"] for r in refs] == [
        exchange_account_uid_ref(exchange_id, uid, api_url=fake.url, sandbox=False) for uid in (first_uid, second_uid)
    ]
    assert refs[0]["account_ref"] == exchange_account_ref(exchange_id, fake.api_key, api_url=fake.url, sandbox=False)


@pytest.mark.parametrize("exchange_id", NAMING_EXCHANGES)
async def test_a_connections_new_key_must_work_and_open_the_same_account(api: Api, exchange_id: str) -> None:
    # PUT .../credentials: the new key is checked like a new connection's. A key the exchange
    # names as another account's is refused (the connection's orders, portfolios and history are
    # its account's), and so is a key another connection already uses; nothing changes then.
    alice, bob = await api.user(with_connection=False), await api.user(with_connection=False)
    _verifying(api)
    second, third = "second-key-of-the-account-0123", "third-key-of-the-account-01234"
    async with STARTERS[exchange_id]() as started:
        fake: Any = started
        fake.other_api_keys |= {second, third}
        created = await alice.post("/api/v1/connections", _key_body(exchange_id, fake, fake.api_key))
        assert created.status_code == 201, created.text
        url = f"/api/v1/connections/{created.json()['connection']['id']}/credentials"

        def new_key(key: str) -> dict[str, str]:
            body = _key_body(exchange_id, fake, key)
            return {name: body[name] for name in ("apiKey", "secret", "passphrase") if name in body}

        async def stored() -> asyncpg.Record:
            row: asyncpg.Record = await api.pool.fetchrow(
                "SELECT api_key_hint, account_ref, account_uid_ref FROM exchange_connections WHERE user_id = $1",
                alice.id,
            )
            return row

        before = await stored()
        wrong = await alice.put(url, new_key("not-a-key-of-this-exchange-99"))
        assert wrong.status_code == 422 and wrong.json()["fields"] == ["apiKey"], wrong.text
        replaced = await alice.put(url, new_key(second))
        assert replaced.status_code == 200, replaced.text
        after = await stored()
        assert after["api_key_hint"] == replaced.json()["connection"]["apiKeyHint"] != before["api_key_hint"]
        assert after["account_ref"] == exchange_account_ref(exchange_id, second, api_url=fake.url, sandbox=False)
        assert after["account_uid_ref"] == before["account_uid_ref"] is not None

        first_uid = fake.uid
        fake.uid = first_uid + 1  # the third key opens another account
        elsewhere = await alice.put(url, new_key(third))
        assert elsewhere.status_code == 422 and f"another {exchange_id} account" in elsewhere.text, elsewhere.text
        bobs = await bob.post("/api/v1/connections", _key_body(exchange_id, fake, third))
        assert bobs.status_code == 201, bobs.text
        fake.uid = first_uid  # say it opened alice's account after all: bob's connection has that key
        taken = await alice.put(url, new_key(third))
        assert taken.status_code == 409 and bobs.json()["connection"]["id"] not in taken.text, taken.text
        assert await stored() == after
        assert (await bob.put(url, new_key(second))).status_code == 404


async def test_a_connection_the_pricer_found_to_share_an_account_says_so(api: Api) -> None:
    # The pricer marks a second connection to an account (migration 015) and refuses its live runs;
    # the API shows which connection that is, so its user knows which one to delete.
    alice = await api.user(with_connection=False)
    ids = []
    for name in ("first", "second"):
        made = await alice.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": paper_account(name)})
        assert made.status_code == 201, made.text
        assert made.json()["connection"]["sharesAccount"] is False
        ids.append(made.json()["connection"]["id"])
    await api.pool.execute(
        "UPDATE exchange_connections SET same_account_as = $1::uuid WHERE id = $2::uuid", ids[0], ids[1]
    )
    listed = await alice.get("/api/v1/connections")
    assert [(c["id"], c["sharesAccount"]) for c in listed.json()["connections"]] == [(ids[0], False), (ids[1], True)]
    one = await alice.get(f"/api/v1/connections/{ids[1]}")
    assert one.status_code == 200 and one.json()["connection"]["sharesAccount"] is True
    # Deleting the other one frees it.
    deleted = await alice.delete(f"/api/v1/connections/{ids[0]}")
    assert deleted.status_code == 204, deleted.text
    freed = await alice.get(f"/api/v1/connections/{ids[1]}")
    assert freed.json()["connection"]["sharesAccount"] is False


async def test_the_api_names_the_accounts_of_older_connections_when_it_starts(api: Api, caplog) -> None:
    """Connections made before migration 011 (or written by a seed) have no name: the API's start
    names them, the oldest of two to one account first, and warns of the other."""
    user = await api.user(with_connection=False)
    account, key = paper_account("old"), f"OLD{uuid.uuid4().hex}"
    sealed, version = api.box.seal(Credentials(api_key=key, secret="old-secret-123"))

    made = itertools.count()

    async def insert(exchange_id: str, paper: str | None = None, credentials: bytes | None = None) -> uuid.UUID:
        connection_id: uuid.UUID = await api.pool.fetchval(
            "INSERT INTO exchange_connections"
            " (user_id, exchange_id, paper_account, credentials_enc, key_version, created_at)"
            " VALUES ($1, $2, $3, $4, $5, now() - interval '1 hour' + $6 * interval '1 second') RETURNING id",
            user.id, exchange_id, paper, credentials, version if credentials else None, next(made),
        )
        return connection_id

    paper_first, paper_second = await insert("paper", account), await insert("paper", account)
    paper_unnamed = await insert("paper")
    kraken_first, kraken_second = await insert("kraken", credentials=sealed), await insert("kraken", credentials=sealed)
    with caplog.at_level(logging.WARNING, logger="services.api"):
        assert await name_accounts(api.pool, api.box) >= 3
    refs = {r["id"]: r["account_ref"] for r in await _connections(api, user.id)}
    assert refs == {
        paper_first: paper_account_ref(account),
        paper_second: None,
        paper_unnamed: paper_account_ref(str(paper_unnamed)),
        kraken_first: exchange_account_ref("kraken", key, api_url=None, sandbox=False),
        kraken_second: None,
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for second, first in ((paper_second, paper_first), (kraken_second, kraken_first)):
        assert any(f"connection {second} trades the same" in w and f"as connection {first}" in w for w in warnings)
    assert all(key not in w for w in warnings)
    # Each second connection is marked as its account's, and the pricer refuses its live runs.
    marks = {r["id"]: r["same_account_as"] for r in await api.pool.fetch(
        "SELECT id, same_account_as FROM exchange_connections WHERE user_id = $1", user.id
    )}
    assert marks == {
        paper_first: None, paper_second: paper_first, paper_unnamed: None,
        kraken_first: None, kraken_second: kraken_first,
    }
    accounts = ExchangeAccounts(api.pool)
    await accounts.refuse_live_run_on_shared_account(str(paper_first))
    for second, first in ((paper_second, paper_first), (kraken_second, kraken_first)):
        with pytest.raises(SharedAccount, match=f"as connection {first}: a live run on it is refused"):
            await accounts.refuse_live_run_on_shared_account(str(second))
    # Naming again changes nothing; a new connection to a named account is refused.
    assert await name_accounts(api.pool, api.box) == 0
    assert {r["id"]: r["account_ref"] for r in await _connections(api, user.id)} == refs
    refused = await user.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": account})
    assert refused.status_code == 409 and str(paper_first) in refused.text


async def test_a_key_of_an_exchange_whose_keys_have_a_passphrase_needs_it(api: Api) -> None:
    # OKX (like KuCoin and Bitget) signs every call with the key's passphrase too: a connection
    # without it could never be used, so it is refused up front, naming the field, and nothing is stored.
    alice = await api.user(with_connection=False)
    key = f"OKX{uuid.uuid4().hex}"
    body = {"exchangeId": "okx", "apiKey": key, "secret": "S3CR3T-VALUE-XYZ"}
    for passphrase in ({}, {"passphrase": "  "}):
        refused = await alice.post("/api/v1/connections", {**body, **passphrase})
        assert refused.status_code == 422 and refused.json()["fields"] == ["passphrase"], refused.text
        assert "okx API keys have a passphrase" in refused.text
    missing_all = await alice.post("/api/v1/connections", {"exchangeId": "kucoin"})
    assert missing_all.status_code == 422 and missing_all.json()["fields"] == ["apiKey", "secret", "passphrase"]
    assert await _connections(api, alice.id) == []
    # Exchanges whose keys have none take a key and a secret alone.
    kraken = await alice.post("/api/v1/connections", {**body, "exchangeId": "kraken"})
    assert kraken.status_code == 201, kraken.text

    made = await alice.post("/api/v1/connections", {**body, "passphrase": "the-key's-passphrase"})
    assert made.status_code == 201, made.text
    url = f"/api/v1/connections/{made.json()['connection']['id']}/credentials"
    before = await _connections(api, alice.id)
    again = await alice.put(url, {"apiKey": f"OKX{uuid.uuid4().hex}", "secret": "ANOTHER-SECRET"})
    assert again.status_code == 422 and again.json()["fields"] == ["passphrase"], again.text
    assert await _connections(api, alice.id) == before


async def test_a_bitget_unified_accounts_key_is_connected_and_its_account_named(api: Api) -> None:
    # Bitget's unified trading accounts are traded (ccxt's defects mended: ccxt_bitget), so the check
    # passes and records the account Bitget names, as for a classic one.
    alice = await api.user(with_connection=False)
    _verifying(api)
    async with STARTERS["bitget"]() as started:
        fake: Any = started
        fake.unified = True
        made = await alice.post("/api/v1/connections", _key_body("bitget", fake, fake.api_key))
        uid = fake.named_account()
    assert made.status_code == 201, made.text
    [ref] = await api.pool.fetch("SELECT account_uid_ref FROM exchange_connections WHERE user_id = $1", alice.id)
    assert ref["account_uid_ref"] == exchange_account_uid_ref("bitget", uid, api_url=fake.url, sandbox=False)


@pytest.mark.parametrize("exchange_id", ["kucoin"])
async def test_a_unified_accounts_key_is_refused_naming_the_field_and_nothing_is_saved(
    api: Api, exchange_id: str
) -> None:
    # The rebalancer does not trade KuCoin's unified trading accounts yet (their endpoints are not
    # proven here): the key is refused with the reason, before anything is saved.
    alice = await api.user(with_connection=False)
    _verifying(api)
    async with STARTERS[exchange_id]() as started:
        fake: Any = started
        fake.unified = True
        refused = await alice.post("/api/v1/connections", _key_body(exchange_id, fake, fake.api_key))
    assert refused.status_code == 422, refused.text
    assert refused.json()["fields"] == ["apiKey"]
    [problem] = refused.json()["detail"]
    assert "unified trading account" in problem["msg"] and "classic account" in problem["msg"]
    assert await _connections(api, alice.id) == []
