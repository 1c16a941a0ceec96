"""Portfolio CRUD through the seed's contract and the v1 routes; validation; authentication."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.test_api_harness import Api, api_fixture, paper_account  # noqa: F401

pytestmark = pytest.mark.integration


async def _count(api: Api, table: str) -> int:
    return int(await api.pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_seed_contract_create_list_update_delete(api: Api) -> None:
    user = await api.user()
    created = await user.create_portfolio()
    assert created["name"] == "My Portfolio"
    assert created["targetWeights"] == {"BTC": "40", "ETH": "30", "SOL": "20", "ADA": "10"}
    assert created["rebalanceInterval"] == "weekly"
    assert created["maxOrdersPerRebalance"] == 5
    assert created["connectionId"] == user.connection_id  # the user's only connection
    for field in ("id", "lastRebalancedAt", "nextRebalanceAt", "createdAt", "updatedAt", "rebalanceEnabled"):
        assert field in created

    stored = await api.pool.fetchval(
        "SELECT target_weights::text FROM portfolios WHERE id = $1", uuid.UUID(created["id"])
    )
    assert json.loads(stored) == {"BTC": "40", "ETH": "30", "SOL": "20", "ADA": "10"}  # an object, not a string
    listed = (await user.get("/api/portfolios/manage")).json()
    assert listed["success"] is True
    assert [p["id"] for p in listed["portfolios"]] == [created["id"]]

    before_next = created["nextRebalanceAt"]
    response = await user.put(
        "/api/portfolios/manage",
        {
            "id": created["id"],
            "name": "Renamed",
            "rebalanceInterval": "hourly",
            "targetWeights": {"BTC": 60, "ETH": 40},
        },
    )
    assert response.status_code == 200, response.text
    updated = response.json()["portfolio"]
    assert updated["name"] == "Renamed"
    assert updated["targetWeights"] == {"BTC": "60", "ETH": "40"}
    assert updated["rebalanceInterval"] == "hourly"
    # A new portfolio waits for the scheduler to compute its due time; so does a rescheduled one.
    assert before_next is None and updated["nextRebalanceAt"] is None

    response = await user.delete("/api/portfolios/manage", id=created["id"])
    assert response.status_code == 200
    assert response.json() == {"success": True, "deleted": created["id"]}
    assert (await user.get("/api/portfolios/manage")).json()["portfolios"] == []


async def test_delete_with_id_in_body(api: Api) -> None:
    user = await api.user()
    created = await user.create_portfolio()
    response = await api.client.request(
        "DELETE", "/api/portfolios/manage", json={"id": created["id"]}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert await api.pool.fetchval("SELECT count(*) FROM portfolios WHERE id = $1", uuid.UUID(created["id"])) == 0


async def test_v1_routes(api: Api) -> None:
    user = await api.user()
    response = await user.post(
        "/api/v1/portfolios",
        {
            "name": "Cron",
            "targetWeights": {"btc": "33.33", "eth": "33.33", "usdc": "33.33"},
            "rebalanceInterval": "0 9 * * 1",
            "timezone": "Europe/Berlin",
            "thresholdKind": "relative",
            "rebalanceThreshold": "25",
            "leaveAlone": ["DOGE"],
            "orderType": "limit",
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    # Normalized to exactly 100, upper-cased, the remainder on the largest weight.
    weights = created["targetWeights"]
    assert set(weights) == {"BTC", "ETH", "USDC"}
    assert sum(map(float, weights.values())) == pytest.approx(100)
    assert str(sum(__import__("decimal").Decimal(w) for w in weights.values())) in ("100", "100.00000000")
    assert created["rebalanceInterval"] == "cron" and created["cron"] == "0 9 * * 1"

    got = await user.get(f"/api/v1/portfolios/{created['id']}")
    assert got.status_code == 200 and got.json()["id"] == created["id"]
    patched = await api.client.patch(f"/api/v1/portfolios/{created['id']}", json={"dryRun": True}, headers=user.headers)
    assert patched.status_code == 200 and patched.json()["dryRun"] is True
    assert patched.json()["cron"] == "0 9 * * 1"
    listed = await user.get("/api/v1/portfolios")
    assert [p["id"] for p in listed.json()] == [created["id"]]
    assert (await user.delete(f"/api/v1/portfolios/{created['id']}")).status_code == 204
    assert (await user.get(f"/api/v1/portfolios/{created['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"targetWeights": {"BTC": 50, "ETH": 30}}, {"targetWeights"}),  # sums to 80
        ({"targetWeights": {"BTC": 110, "ETH": -10}}, {"targetWeights"}),
        ({"targetWeights": {"BTC": 50, "btc": 50}}, {"targetWeights"}),  # repeated
        ({"targetWeights": {"B TC!": 100}}, {"targetWeights"}),
        ({"targetWeights": {}}, {"targetWeights"}),
        ({"rebalanceThreshold": 150}, {"rebalanceThreshold"}),
        ({"rebalanceThreshold": -1}, {"rebalanceThreshold"}),
        ({"rebalanceInterval": "fortnightly"}, {"rebalanceInterval"}),
        ({"rebalanceInterval": "cron"}, {"cron"}),
        ({"cron": "61 * * * *", "rebalanceInterval": "cron"}, {"cron"}),
        ({"quoteCurrency": "US$"}, {"quoteCurrency"}),
        ({"timezone": "Mars/Olympus"}, {"timezone"}),
        ({"maxOrdersPerRebalance": 0}, {"maxOrdersPerRebalance"}),
        ({"leaveAlone": ["BTC"]}, {"leaveAlone"}),
        ({"connectionId": str(uuid.uuid4())}, {"connectionId"}),
        ({"targetWight": {"BTC": 100}}, {"targetWight"}),  # typo: unknown field
        # several bad fields at once: each one is named
        (
            {"targetWeights": {"BTC": 10}, "rebalanceThreshold": 0, "quoteCurrency": "!!", "orderType": "stop"},
            {"targetWeights", "rebalanceThreshold", "quoteCurrency", "orderType"},
        ),
    ],
)
async def test_bad_input_is_422_naming_each_field_and_writes_nothing(api: Api, body, fields) -> None:
    user = await api.user()
    full = {"name": "P", "targetWeights": {"BTC": 100}, **body}
    before = await _count(api, "portfolios")
    response = await user.post("/api/portfolios/manage", full)
    assert response.status_code == 422, response.text
    named = set(response.json()["fields"])
    assert fields <= named, response.json()
    assert await _count(api, "portfolios") == before


async def test_update_validation_writes_nothing(api: Api) -> None:
    user = await api.user()
    created = await user.create_portfolio()
    response = await user.put(
        "/api/portfolios/manage",
        {"id": created["id"], "name": "X", "thresholdKind": "absolute", "rebalanceThreshold": 500},
    )
    assert response.status_code == 422
    assert response.json()["fields"] == ["rebalanceThreshold"]
    still = (await user.get(f"/api/v1/portfolios/{created['id']}")).json()
    assert still["name"] == "My Portfolio"
    missing_id = await user.put("/api/portfolios/manage", {"name": "X"})
    assert missing_id.status_code == 422 and missing_id.json()["fields"] == ["id"]


async def test_weights_within_tolerance_are_normalized(api: Api) -> None:
    user = await api.user()
    created = await user.create_portfolio(targetWeights={"BTC": "50.05", "ETH": "50"})
    assert created["targetWeights"] == {"BTC": "50.02498751", "ETH": "49.97501249"}


async def test_no_connection_is_422(api: Api) -> None:
    user = await api.user(with_connection=False)
    response = await user.post("/api/portfolios/manage", {"name": "P", "targetWeights": {"BTC": 100}})
    assert response.status_code == 422
    assert response.json()["fields"] == ["connectionId"]


async def test_authentication(api: Api) -> None:
    assert (await api.client.get("/api/portfolios/manage")).status_code == 401
    bad = await api.client.get("/api/v1/portfolios", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["success"] is False
    user = await api.user()
    await api.pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1", user.id)
    assert (await user.get("/api/v1/portfolios")).status_code == 401


async def test_sign_up_and_me(api: Api) -> None:
    email = f"new{uuid.uuid4().hex[:8]}@example.com"
    response = await api.client.post("/api/v1/users", json={"email": email, "name": "New"})
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    stored = await api.pool.fetchval(
        "SELECT token_hash FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.email = $1", email
    )
    assert stored != token and len(stored) == 64  # only the sha256 hex is stored
    me = await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["email"] == email and me.json()["scopes"] == ["user"] and me.json()["isAdmin"] is False
    again = await api.client.post("/api/v1/users", json={"email": email.upper()})
    assert again.status_code == 409
    bad = await api.client.post("/api/v1/users", json={"email": "not-an-email"})
    assert bad.status_code == 422 and bad.json()["fields"] == ["email"]


async def test_an_account_has_one_live_portfolio(api: Api) -> None:
    # A portfolio rebalances its whole exchange account: a second live one on the same account
    # would undo the first one's trades on every run, and each run would pay the fees both ways.
    user = await api.user()
    first = await user.create_portfolio(name="Core")
    before = await _count(api, "portfolios")
    for route in ("/api/portfolios/manage", "/api/v1/portfolios"):
        refused = await user.post(route, {"name": "Second", "targetWeights": {"BTC": 100}})
        assert refused.status_code == 422, refused.text
        assert refused.json()["fields"] == ["connectionId"]
        assert "'Core'" in refused.text and first["id"] in refused.text and "dryRun" in refused.text
    assert await _count(api, "portfolios") == before

    # A dry run on the same account simulates only: allowed, and it cannot go live beside the first.
    simulated = await user.create_portfolio(name="What if", dryRun=True, targetWeights={"BTC": 100})
    going_live = await user.put("/api/portfolios/manage", {"id": simulated["id"], "dryRun": False})
    assert going_live.status_code == 422 and going_live.json()["fields"] == ["connectionId"]
    assert (await user.get(f"/api/v1/portfolios/{simulated['id']}")).json()["dryRun"] is True

    # Edits that do not make a portfolio live on the account are not refused.
    renamed = await user.put("/api/portfolios/manage", {"id": first["id"], "name": "Core 2"})
    assert renamed.status_code == 200, renamed.text
    # Once the first is a dry run, the other may go live; and another account takes its own.
    assert (await user.put("/api/portfolios/manage", {"id": first["id"], "dryRun": True})).status_code == 200
    live = await user.put("/api/portfolios/manage", {"id": simulated["id"], "dryRun": False})
    assert live.status_code == 200, live.text
    other = await user.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": paper_account("other")})
    assert other.status_code == 201, other.text
    elsewhere = await user.create_portfolio(name="Elsewhere", connectionId=other.json()["connection"]["id"])
    assert elsewhere["dryRun"] is False
