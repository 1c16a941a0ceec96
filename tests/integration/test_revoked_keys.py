"""A connection whose API key the exchange refused for good, with a leg of unknown outcome on it,
through the API, the executor and the ledger (real ccxt Kraken class against the fake server, on
real NATS JetStream and PostgreSQL).

A run leaves a leg that may be on the exchange; the exchange then refuses the connection's key.
The reconciler cannot look the leg up, so the connection could never be deleted. Its owner either
gives the connection a new key of the same account (``PUT .../credentials``): the services drop
the old key at once and the reconciler finds the leg with the new one; or, when the account is out
of reach, gives the leg up (``POST .../abandon-orders``): the executor looks it up once more, is
refused again, and records it as abandoned, its outcome unknown. Either way the history says what
became of it and the connection can then be deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.api.accounts import create_token
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.fakes.engine import FakeOrder
from tests.faults.helpers import eventually
from tests.integration.test_exchange_faults import (  # noqa: F401  (rig: the fixture)
    LEGS,
    Rig,
    by_leg,
    rig,
    stop_a_run_with_a_leg_unknown_and_the_key_refused,
)
from tests.support.ccxt_pipeline import run_history, run_rebalance, seed_ccxt_portfolio

pytestmark = pytest.mark.integration


@pytest.fixture
async def api_client(rig: Rig, database_url: str) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """The API on the rig's database and stream, opening keys with the services' key."""
    settings = ApiSettings(
        database_url=database_url,
        nats_url=rig.nats_url,
        bus_namespace=rig.namespace,
        stream_name=rig.namespace.upper(),
        api_verify_connections=False,
        db_pool_max=4,
    )
    app = create_app(settings, secret_box=rig.box)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


@dataclass(frozen=True)
class Stranded:
    """A run's ETH leg of unknown outcome on a connection whose key the exchange now refuses."""

    user_id: str
    connection_id: str
    portfolio_id: str
    run_id: str
    eth: str  # the leg's client order id
    placed: FakeOrder  # the order the exchange has for it
    headers: dict[str, str]  # the owner's API token


async def leave_a_leg_unknown_and_revoke_the_key(rig: Rig) -> Stranded:  # noqa: F811
    """The ETH buy of a Kraken run left of unknown outcome, the key refused for good
    (``stop_a_run_with_a_leg_unknown_and_the_key_refused``), and its owner's API token."""
    history = await stop_a_run_with_a_leg_unknown_and_the_key_refused(rig)
    eth = by_leg(history)[LEGS["ETH"]]
    assert history.status == "failed" and eth["state"] == "sending"
    assert [e["leg"] for e in history.run["errors"] if e["code"] == "outcome_unknown"] == [LEGS["ETH"]]
    [placed] = rig.fake.orders_with_client_id(eth["client_order_id"])
    user_id, portfolio_id = history.run["user_id"], history.run["portfolio_id"]
    async with rig.pool.acquire() as conn:
        token = await create_token(conn, user_id, "test", ["user"])
        connection_id = await conn.fetchval("SELECT connection_id FROM portfolios WHERE id = $1", portfolio_id)
    return Stranded(
        str(user_id), str(connection_id), str(portfolio_id), str(history.run["id"]), eth["client_order_id"],
        placed, {"Authorization": f"Bearer {token}"},
    )


def look_ups(rig: Rig) -> list[str]:  # noqa: F811
    """Kraken's order reads (by client order id: open, closed or queried orders)."""
    return [r.path for r in rig.fake.requests if "Orders" in r.path and "AddOrder" not in r.path]


@pytest.mark.parametrize("rig", ["kraken"], indirect=True)
async def test_an_unknown_leg_of_a_revoked_key_is_abandoned_through_the_api_and_the_connection_deleted(
    rig: Rig, api_client: httpx.AsyncClient  # noqa: F811
) -> None:
    stranded = await leave_a_leg_unknown_and_revoke_the_key(rig)
    connection_id, portfolio_id, run_id, eth = (
        stranded.connection_id, stranded.portfolio_id, stranded.run_id, stranded.eth
    )
    placed, headers = stranded.placed, stranded.headers
    connection = f"/api/v1/connections/{connection_id}"

    response = await api_client.delete(f"/api/v1/portfolios/{portfolio_id}", headers=headers)
    assert response.status_code == 204, response.text
    response = await api_client.delete(connection, headers=headers)
    assert response.status_code == 409 and eth in response.text and "abandon-orders" in response.text

    response = await api_client.get(f"{connection}/unresolved-orders", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["orders"] == [{
        "clientOrderId": eth, "runId": run_id, "runStatus": "failed", "symbol": "ETH/USD", "side": "buy",
        "state": "sending",
    }]
    # An id that is not an unresolved order of this connection: a 422 naming the field, nothing sent.
    response = await api_client.post(
        f"{connection}/abandon-orders", json={"clientOrderIds": [eth, "rb-not-one-of-them"]}, headers=headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["fields"] == ["clientOrderIds"] and "rb-not-one-of-them" in response.text
    await asyncio.sleep(0.5)
    assert await rig.pool.fetchval("SELECT state FROM order_intents WHERE client_order_id = $1", eth) == "sending"

    lookups_before = len(look_ups(rig))
    response = await api_client.post(f"{connection}/abandon-orders", json={"clientOrderIds": [eth]}, headers=headers)
    assert response.status_code == 202, response.text
    assert [o["clientOrderId"] for o in response.json()["orders"]] == [eth]

    async def abandoned() -> bool:
        return await rig.pool.fetchval(
            "SELECT status = 'abandoned' FROM orders WHERE client_order_id = $1", eth
        ) is True

    await eventually(abandoned, "the ledger to record the ETH leg as abandoned", timeout=20)
    history = await run_history(rig.pool, run_id)
    assert by_leg(history)[LEGS["ETH"]]["state"] == "abandoned"
    # Looked up once more (and refused), never sent again nor canceled: the exchange has one order.
    assert len(look_ups(rig)) > lookups_before
    assert rig.fake.orders_with_client_id(eth) == [placed]
    order = next(o for o in history.orders if o["leg"] == LEGS["ETH"])
    assert order["error"]["code"] == "abandoned" and "outcome unknown" in order["error"]["message"]
    assert eth in order["error"]["message"] and "AuthenticationError" in order["error"]["message"]
    assert not [t for t in history.trades if t["client_order_id"] == eth]
    # The run counts it as neither executed nor failed, and its error says it was given up.
    run = history.run
    assert (run["orders_executed"], run["orders_failed"]) == (1, 2)
    [given_up] = [e for e in run["errors"] if e["leg"] == LEGS["ETH"]]
    assert given_up["code"] == "outcome_abandoned"
    assert given_up["message"].endswith("abandoned by its owner after the run completed, its outcome never known")
    assert "order_abandoned" in history.activity_types()

    response = await api_client.get(f"{connection}/unresolved-orders", headers=headers)
    assert response.json()["orders"] == []
    response = await api_client.delete(connection, headers=headers)
    assert response.status_code == 204, response.text
    # The history outlives the connection.
    assert await rig.pool.fetchval("SELECT status FROM orders WHERE client_order_id = $1", eth) == "abandoned"


@pytest.mark.parametrize("rig", ["kraken"], indirect=True)
async def test_an_order_whose_run_still_follows_it_cannot_be_abandoned(
    rig: Rig, api_client: httpx.AsyncClient  # noqa: F811
) -> None:
    seeded = await seed_ccxt_portfolio(rig.pool, rig.exchange_id, rig.fake, rig.box)
    run_id, cid = str(uuid.uuid4()), f"rb-{uuid.uuid4().hex[:12]}"
    await rig.pool.execute(
        "INSERT INTO rebalance_runs (id, portfolio_id, user_id, triggered_by, started_at, quote_currency, status)"
        " VALUES ($1::uuid, $2::uuid, $3::uuid, 'manual', now(), 'USD', 'running')",
        run_id, seeded.portfolio_id, seeded.user_id,
    )
    await rig.pool.execute(
        "INSERT INTO order_intents (client_order_id, run_id, leg, portfolio_id, user_id, connection_id, symbol,"
        " side, amount, state, attempts) VALUES ($1, $2::uuid, 0, $3::uuid, $4::uuid, $5::uuid, $6, 'buy', 0.1,"
        " 'sending', 1)",
        cid, run_id, seeded.portfolio_id, seeded.user_id, seeded.connection_id, rig.symbol("ETH"),
    )
    async with rig.pool.acquire() as conn:
        token = await create_token(conn, uuid.UUID(seeded.user_id), "test", ["user"])
        other = await create_token(conn, uuid.UUID(await conn.fetchval(
            "INSERT INTO users (email, name) VALUES ($1, 'Other') RETURNING id::text", f"o-{cid}@example.com"
        )), "test", ["user"])
    url = f"/api/v1/connections/{seeded.connection_id}/abandon-orders"
    response = await api_client.post(url, json={"clientOrderIds": [cid]}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 409 and run_id in response.text and "still following" in response.text
    response = await api_client.post(url, json={"clientOrderIds": [cid]}, headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 404
    response = await api_client.post(url, json={"clientOrderIds": []}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 422 and "clientOrderIds" in response.text
    await asyncio.sleep(0.5)
    assert await rig.pool.fetchval("SELECT state FROM order_intents WHERE client_order_id = $1", cid) == "sending"
    # Other tests' reconcilers would look it up with a key they cannot open: leave it resolved.
    await rig.pool.execute("UPDATE order_intents SET state = 'failed' WHERE client_order_id = $1", cid)


@pytest.mark.parametrize("rig", ["kraken"], indirect=True)
async def test_a_new_key_for_a_refused_connection_is_used_at_once_and_finds_the_unknown_leg(
    rig: Rig, api_client: httpx.AsyncClient  # noqa: F811
) -> None:
    stranded = await leave_a_leg_unknown_and_revoke_the_key(rig)
    connection_id, portfolio_id, run_id, eth = (
        stranded.connection_id, stranded.portfolio_id, stranded.run_id, stranded.eth
    )
    placed, headers = stranded.placed, stranded.headers
    async with rig.pool.acquire() as conn:
        paper_user = await conn.fetchval(
            "INSERT INTO users (email, name) VALUES ($1, 'P') RETURNING id", f"p-{eth}@example.com"
        )
        paper = await conn.fetchval(
            "INSERT INTO exchange_connections (user_id, exchange_id, label, paper_account)"
            " VALUES ($1, 'paper', 'paper', $2) RETURNING id::text", paper_user, f"acct-{eth}",
        )
        paper_token = await create_token(conn, paper_user, "test", ["user"])
    url = f"/api/v1/connections/{connection_id}/credentials"
    old_key = rig.fake.api_key
    new_key, new_secret = "kraken-rotated-key-5e1d9b3a77", "cm90YXRlZC1zZWNyZXQta3Jha2VuLWRvLW5vdC1sb2c="
    # The account gets a new key; the old one is refused from now on.
    rig.fake.api_key, rig.fake.secret, rig.fake.reject_auth = new_key, new_secret, False

    refused = [
        (url, {"apiKey": " ", "secret": new_secret}, headers, 422, "apiKey"),
        (url, {"apiKey": new_key}, headers, 422, "secret"),
        (url, {"apiKey": new_key, "secret": new_secret, "label": "x"}, headers, 422, "label"),
        (url, {"apiKey": new_key, "secret": new_secret}, {"Authorization": f"Bearer {paper_token}"}, 404, "not found"),
        (f"/api/v1/connections/{paper}/credentials", {"apiKey": new_key, "secret": new_secret},
         {"Authorization": f"Bearer {paper_token}"}, 422, "paper exchange takes no keys"),
    ]
    for target, body, who, status, said in refused:
        response = await api_client.put(target, json=body, headers=who)
        assert response.status_code == status and said in response.text, (body, response.text)
    sealed = await rig.pool.fetchval(
        "SELECT credentials_enc FROM exchange_connections WHERE id = $1::uuid", connection_id
    )
    assert rig.box.open(bytes(sealed)).api_key == old_key  # nothing changed

    # Replaced right after a reconciler pass was refused the old key: its next pass is seconds away.
    seen = len(rig.fake.requests)

    async def refused_again() -> bool:
        return any(r.headers.get("API-Key") == old_key for r in rig.fake.requests[seen:])

    await eventually(refused_again, "the reconciler to try the old key again", timeout=20, interval=0.01)
    # As if the leg had gone unanswered for a day: the reconciler would wait an hour before its next
    # look (an eighth of that, at most RECONCILE_MAX_WAIT_SECONDS), but a new key makes it due now.
    await rig.pool.execute(
        "UPDATE order_intents SET sent_at = now() - interval '1 day', updated_at = now() WHERE client_order_id = $1",
        eth,
    )
    response = await api_client.put(url, json={"apiKey": new_key, "secret": new_secret}, headers=headers)
    assert response.status_code == 200, response.text
    replaced_at = len(rig.fake.requests)
    assert response.json()["connection"]["apiKeyHint"] not in ("", None) and new_key not in response.text
    row = await rig.pool.fetchrow(
        "SELECT credentials_enc, account_ref FROM exchange_connections WHERE id = $1::uuid", connection_id
    )
    assert rig.box.open(bytes(row["credentials_enc"])).api_key == new_key and row["account_ref"].startswith("kraken:")

    async def eth_traded() -> bool:
        return bool(await rig.pool.fetchval("SELECT count(*) FROM trades WHERE client_order_id = $1", eth))

    await eventually(eth_traded, "the reconciler to find the ETH fill with the new key", timeout=30)
    history = await run_history(rig.pool, run_id)
    assert by_leg(history)[LEGS["ETH"]]["state"] == "filled"
    assert next(o for o in history.orders if o["leg"] == LEGS["ETH"])["status"] == "filled"
    [found] = [e for e in history.run["errors"] if e["leg"] == LEGS["ETH"]]
    assert found["code"] == "outcome_found_late"
    assert rig.fake.orders_with_client_id(eth) == [placed]  # found, never sent again
    # The services dropped the old key when told (ConnectionChanged), before their next call.
    after = rig.fake.requests[replaced_at:]
    assert [r.path for r in after if r.headers.get("API-Key") == old_key] == []
    assert any(r.headers.get("API-Key") == new_key for r in after)

    assert (await api_client.delete(f"/api/v1/portfolios/{portfolio_id}", headers=headers)).status_code == 204
    assert (await api_client.delete(f"/api/v1/connections/{connection_id}", headers=headers)).status_code == 204


@pytest.mark.parametrize("rig", ["kraken"], indirect=True)
async def test_a_key_replaced_before_the_old_one_is_revoked_is_used_by_the_next_run(
    rig: Rig, api_client: httpx.AsyncClient  # noqa: F811
) -> None:
    # A rotation done right: the new key is given first, then the old one is deleted at the
    # exchange. The services hold clients signed with the old key since the first run; told of the
    # new key (ConnectionChanged), they drop them, so the next run is not refused the old key.
    seeded = await seed_ccxt_portfolio(rig.pool, rig.exchange_id, rig.fake, rig.box)
    first = await run_rebalance(rig.pool, rig.nats_url, rig.namespace, seeded)
    assert first.status == "succeeded", first.run["errors"]
    async with rig.pool.acquire() as conn:
        token = await create_token(conn, uuid.UUID(seeded.user_id), "test", ["user"])
    old_key, new_key, new_secret = rig.fake.api_key, "kraken-next-key-8c2f4e6a1d", "bmV4dC1zZWNyZXQta3Jha2VuLWtleQ=="
    response = await api_client.put(
        f"/api/v1/connections/{seeded.connection_id}/credentials",
        json={"apiKey": new_key, "secret": new_secret},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    await asyncio.sleep(0.5)  # the announcement is on its way to every process
    rig.fake.api_key, rig.fake.secret = new_key, new_secret  # the old key is deleted at the exchange
    revoked_at = len(rig.fake.requests)

    second = await run_rebalance(rig.pool, rig.nats_url, rig.namespace, seeded)
    assert second.status in ("skipped", "succeeded"), second.run["errors"]
    after = rig.fake.requests[revoked_at:]
    assert [r.path for r in after if r.headers.get("API-Key") == old_key] == []
    assert any(r.headers.get("API-Key") == new_key for r in after)
