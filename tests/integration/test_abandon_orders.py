"""Orders of unknown outcome given up by their owner, through the API, the executor and the ledger.

A run leaves a leg that may be on the exchange; the exchange then refuses the connection's API key
for good. The reconciler can never look the leg up, so the connection could never be deleted: the
owner gives the leg up (``POST /api/v1/connections/{id}/abandon-orders``), the executor looks it up
once more, is refused again, and records it as abandoned, its outcome unknown; the ledger says so
in the orders history and in the run's errors; and the connection can then be deleted. Real
ccxt Kraken class against the fake server, on real NATS JetStream and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from services.api.accounts import create_token
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.faults.helpers import eventually
from tests.integration.test_exchange_faults import LEGS, Rig, by_leg, rig  # noqa: F401  (the fixture)
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


async def leave_a_leg_unknown_and_revoke_the_key(rig: Rig) -> tuple[str, str, str, str, str]:  # noqa: F811
    """As in test_exchange_faults: the BTC sell fills, the ETH buy is placed but its answer times
    out and its look-ups are rate limited, and then the exchange refuses the key for good. Returns
    (user id, connection id, portfolio id, run id, the ETH leg's client order id)."""
    rig.fake.fail_next("timeout", 1, "AddOrder", after=1)
    rig.fake.fail_next("rate_limit", 5, "Orders")
    seeded = await seed_ccxt_portfolio(rig.pool, rig.exchange_id, rig.fake, rig.box)
    run = asyncio.create_task(run_rebalance(rig.pool, rig.nats_url, rig.namespace, seeded, timeout=60))

    async def faults_met() -> bool:
        return rig.fake.faults_left == 0

    await eventually(faults_met, "the timeout and rate limits to be met", timeout=30, interval=0.02)
    rig.fake.reject_auth = True
    history = await run
    eth = by_leg(history)[LEGS["ETH"]]
    assert history.status == "failed" and eth["state"] == "sending"
    assert [e["leg"] for e in history.run["errors"] if e["code"] == "outcome_unknown"] == [LEGS["ETH"]]
    return seeded.user_id, seeded.connection_id, seeded.portfolio_id, str(history.run["id"]), eth["client_order_id"]


def look_ups(rig: Rig) -> list[str]:  # noqa: F811
    """Kraken's order reads (by client order id: open, closed or queried orders)."""
    return [r.path for r in rig.fake.requests if "Orders" in r.path and "AddOrder" not in r.path]


@pytest.mark.parametrize("rig", ["kraken"], indirect=True)
async def test_an_unknown_leg_of_a_revoked_key_is_abandoned_through_the_api_and_the_connection_deleted(
    rig: Rig, api_client: httpx.AsyncClient  # noqa: F811
) -> None:
    user_id, connection_id, portfolio_id, run_id, eth = await leave_a_leg_unknown_and_revoke_the_key(rig)
    [placed] = rig.fake.orders_with_client_id(eth)
    async with rig.pool.acquire() as conn:
        token = await create_token(conn, uuid.UUID(user_id), "test", ["user"])
    headers = {"Authorization": f"Bearer {token}"}
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
