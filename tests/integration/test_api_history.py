"""History, orders, trades, snapshots, activity and statistics from rows written as the ledger
writes them; filters, pagination and the CSV export; exchange connections (keys write-only)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.api.csv_export import CSV_COLUMNS
from tests.integration.test_api_harness import (
    Api,
    api_fixture,  # noqa: F401
    insert_order,
    insert_run,
    insert_snapshot_and_activity,
    insert_trade,
    paper_account,
)

pytestmark = pytest.mark.integration
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _seeded(api: Api):
    user = await api.user()
    portfolio = await user.create_portfolio()
    pid = portfolio["id"]
    runs = []
    for day in range(12):  # one run a day; every third one failed; the last two manual
        run_id = await insert_run(
            api.pool,
            user.id,
            pid,
            executed_at=DAY0 + timedelta(days=day),
            success=day % 3 != 0,
            triggered_by="manual" if day >= 10 else "scheduler",
            value=str(1000 + day),
            traded="100",
            fees="0.5",
        )
        runs.append(run_id)
    await insert_trade(api.pool, user.id, pid, runs[1], executed_at=DAY0 + timedelta(days=1), asset="BTC")
    await insert_trade(
        api.pool,
        user.id,
        pid,
        runs[2],
        executed_at=DAY0 + timedelta(days=2),
        asset="ETH",
        side="sell",
        quantity="1.5",
        price="3000",
    )
    await insert_snapshot_and_activity(api.pool, user.id, pid, runs[1])
    return user, pid, runs


async def test_history_last_runs_filters_and_pagination(api: Api) -> None:
    user, pid, runs = await _seeded(api)
    last10 = (await user.get(f"/api/v1/portfolios/{pid}/history", limit=10)).json()
    assert last10["total"] == 12 and len(last10["runs"]) == 10
    assert [r["id"] for r in last10["runs"]] == [str(r) for r in reversed(runs)][:10]  # newest first
    run = last10["runs"][0]
    for field in (
        "executedAt",
        "success",
        "dryRun",
        "portfolioValue",
        "ordersPlanned",
        "ordersExecuted",
        "ordersFailed",
        "totalValueTraded",
        "orders",
        "errors",
        "triggeredBy",
        "duration",
        "status",
        "decision",
        "reason",
        "drift",
        "leftOut",
        "fees",
    ):
        assert field in run
    assert run["duration"] == 1200 and run["portfolioValue"] == "1011"

    page2 = (await user.get(f"/api/v1/portfolios/{pid}/history", limit=10, offset=10)).json()
    assert [r["id"] for r in page2["runs"]] == [str(runs[1]), str(runs[0])]

    ok = (await user.get(f"/api/v1/portfolios/{pid}/history", success="true")).json()
    assert ok["total"] == 8 and all(r["success"] for r in ok["runs"])

    ranged = (
        await user.get(
            f"/api/v1/portfolios/{pid}/history",
            **{"from": (DAY0 + timedelta(days=3)).isoformat(), "to": (DAY0 + timedelta(days=6)).isoformat()},
        )
    ).json()
    assert sorted(r["id"] for r in ranged["runs"]) == sorted(str(r) for r in runs[3:6])

    manual = (await user.get("/api/v1/history", triggeredBy="manual")).json()
    assert manual["total"] == 2
    assert (await user.get("/api/v1/history", triggeredBy="nobody")).status_code == 422


async def test_stats_aggregate(api: Api) -> None:
    user, pid, _ = await _seeded(api)
    stats = (await user.get("/api/v1/stats", portfolioId=pid)).json()
    assert stats["runs"] == 12 and stats["successfulRuns"] == 8 and stats["failedRuns"] == 4
    assert stats["successRate"] == "66.67"
    assert stats["totalValueTraded"] == "1200"
    assert stats["averagePortfolioValue"] == "1005.50"
    assert stats["fees"] == "6.0"
    assert stats["trades"] == 2
    empty = (await user.get("/api/v1/stats", portfolioId=str(uuid.uuid4()))).json()
    assert empty["runs"] == 0 and empty["successRate"] is None


async def test_trades_snapshots_activity(api: Api) -> None:
    user, pid, runs = await _seeded(api)
    trades = (await user.get(f"/api/v1/portfolios/{pid}/trades")).json()
    assert trades["total"] == 2
    assert [t["asset"] for t in trades["trades"]] == ["ETH", "BTC"]
    assert trades["trades"][0]["value"] == "4500.0"
    sells = (await user.get("/api/v1/trades", side="sell")).json()
    assert [t["asset"] for t in sells["trades"]] == ["ETH"]
    snapshots = (await user.get(f"/api/v1/portfolios/{pid}/snapshots")).json()
    assert snapshots["snapshots"][0]["holdings"] == {"BTC": "0.01"}
    activity = (await user.get(f"/api/v1/portfolios/{pid}/activity")).json()
    # The logged entry (written now) and, older, one entry per trade, read from the trade itself.
    entries = activity["activity"]
    assert activity["total"] == 3
    assert [(a["eventType"], a["runId"]) for a in entries] == [
        ("rebalance.completed", str(runs[1])), ("order_filled", str(runs[2])), ("order_filled", str(runs[1]))
    ]
    assert [a["description"] for a in entries[1:]] == [
        "Order executed successfully: sell 1.5 ETH at 3000 USD",
        "Order executed successfully: buy 0.015 BTC at 50000.5 USD",
    ]
    assert entries[2]["createdAt"] == (DAY0 + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert len({a["id"] for a in entries}) == 3
    # Filters and pages run over both sources as over one table.
    second_fill = (await user.get(f"/api/v1/portfolios/{pid}/activity", eventType="order_filled", limit=1,
                                  offset=1)).json()
    assert second_fill["total"] == 2 and [a["runId"] for a in second_fill["activity"]] == [str(runs[1])]
    old = (await user.get(f"/api/v1/portfolios/{pid}/activity", to=(DAY0 + timedelta(days=2)).isoformat())).json()
    assert [a["runId"] for a in old["activity"]] == [str(runs[1])]


async def test_orders_whatever_became_of_them(api: Api) -> None:
    user, pid, runs = await _seeded(api)
    first, second = runs[1], runs[2]
    day1, day2 = DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)
    a0 = await insert_order(api.pool, user.id, pid, first, leg=0, status="filled", created_at=day1, side="sell",
                            symbol="ETH/USD", filled="0.5")
    a1 = await insert_order(api.pool, user.id, pid, first, leg=1, status="filled", created_at=day1, filled="0.5")
    b0 = await insert_order(api.pool, user.id, pid, second, leg=0, status="filled", created_at=day2, side="sell",
                            symbol="ETH/USD", filled="0.5")
    funds = {"stage": "executor", "code": "insufficient_funds", "message": "balance too low", "leg": 1}
    b1 = await insert_order(api.pool, user.id, pid, second, leg=1, status="failed", created_at=day2, error=funds)
    # Reported as submitted first and rejected later: the ledger keeps the latest state.
    b2 = await insert_order(api.pool, user.id, pid, second, leg=2, status="submitted", created_at=day2,
                            symbol="SOL/USD")
    rejected = {"stage": "executor", "code": "rejected", "message": "below the minimum", "leg": 2}
    await insert_order(api.pool, user.id, pid, second, leg=2, status="rejected", created_at=day2, symbol="SOL/USD",
                       error=rejected, client_order_id=b2)

    page = (await user.get(f"/api/v1/portfolios/{pid}/orders")).json()
    assert page["total"] == 5
    # Newest run first, its legs in order.
    assert [o["clientOrderId"] for o in page["orders"]] == [b0, b1, b2, a0, a1]
    assert [o["status"] for o in page["orders"]] == ["filled", "failed", "rejected", "filled", "filled"]
    failed, refused = page["orders"][1], page["orders"][2]
    assert failed["error"] == funds and failed["filled"] == "0" and failed["averagePrice"] is None
    assert refused["error"] == rejected and refused["symbol"] == "SOL/USD"
    filled = page["orders"][0]
    assert filled["error"] is None and filled["filled"] == "0.5" and filled["averagePrice"] == "50000"
    assert filled["runId"] == str(second) and filled["leg"] == 0 and filled["side"] == "sell"
    assert filled["createdAt"] == day2.isoformat().replace("+00:00", "Z")

    problems = (await user.get("/api/v1/orders", status="failed")).json()
    assert [(o["clientOrderId"], o["error"]["code"]) for o in problems["orders"]] == [(b1, "insufficient_funds")]
    one_run = (await user.get("/api/v1/orders", runId=str(first))).json()
    assert [o["clientOrderId"] for o in one_run["orders"]] == [a0, a1]
    sells = (await user.get(f"/api/v1/portfolios/{pid}/orders", side="sell")).json()
    assert [o["clientOrderId"] for o in sells["orders"]] == [b0, a0]
    page2 = (await user.get("/api/v1/orders", portfolioId=pid, limit=2, offset=2)).json()
    assert page2["total"] == 5 and [o["clientOrderId"] for o in page2["orders"]] == [b2, a0]
    older = (await user.get("/api/v1/orders", to=day2.isoformat())).json()
    assert [o["clientOrderId"] for o in older["orders"]] == [a0, a1]

    for params, field in (({"status": "lost"}, "status"), ({"runId": "run-1"}, "runId")):
        response = await user.get("/api/v1/orders", **params)
        assert response.status_code == 422 and field in response.json()["fields"], response.text


async def test_trades_csv_export(api: Api) -> None:
    user, _, runs = await _seeded(api)
    response = await user.get("/api/v1/trades/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 3
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["asset"] == "BTC" and first["side"] == "buy"  # oldest first
    assert first["quantity"] == "0.015" and first["price"] == "50000.5" and first["value"] == "750.0075"
    assert first["fee"] == "0.75" and first["fee_currency"] == "USD" and first["exchange"] == "paper"
    assert first["run_id"] == str(runs[1]) and first["exchange_order_id"].startswith("ex-")
    only_eth = list(csv.reader(io.StringIO((await user.get("/api/v1/trades/export", asset="eth")).text)))
    assert len(only_eth) == 2 and only_eth[1][1] == "ETH"


async def test_connections_keys_are_write_only(api: Api) -> None:
    user = await api.user(with_connection=False)
    response = await user.post(
        "/api/v1/connections",
        {"exchangeId": "kraken", "label": "Main", "apiKey": "KEY1234567890ABCDEF", "secret": "S3CR3T-VALUE-XYZ"},
    )
    assert response.status_code == 201, response.text
    assert "KEY1234567890ABCDEF" not in response.text and "S3CR3T-VALUE-XYZ" not in response.text
    connection = response.json()["connection"]
    assert connection["apiKeyHint"] == "KEY1…EF"
    listed = await user.get("/api/v1/connections")
    assert "S3CR3T" not in listed.text and "KEY1234567890ABCDEF" not in listed.text
    assert [c["id"] for c in listed.json()["connections"]] == [connection["id"]]
    # Encrypted at rest, and the box opens it back to what was sent.
    stored = await api.pool.fetchrow(
        "SELECT credentials_enc, key_version FROM exchange_connections WHERE id = $1", uuid.UUID(connection["id"])
    )
    assert b"S3CR3T" not in bytes(stored["credentials_enc"])
    opened = api.box.open(stored["credentials_enc"])
    assert (opened.api_key, opened.secret) == ("KEY1234567890ABCDEF", "S3CR3T-VALUE-XYZ")
    assert stored["key_version"] == api.box.current_key_version


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"exchangeId": "notanexchange", "apiKey": "k" * 12, "secret": "s" * 12}, ["exchangeId"]),
        ({"exchangeId": "kraken"}, ["apiKey", "secret"]),
        ({"exchangeId": "paper"}, ["paperAccount"]),
        ({"exchangeId": "paper", "paperAccount": "a b"}, ["paperAccount"]),
        ({"exchangeId": "paper", "paperAccount": "acct", "apiKey": "x" * 12}, ["apiKey"]),
        ({"exchangeId": "kraken", "apiKey": "k" * 12, "secret": "s" * 12, "sandbox": True}, ["sandbox"]),
        ({"exchangeId": "kraken", "apiKey": "k" * 12, "secret": "s" * 12, "apiUrl": "ftp://x"}, ["apiUrl"]),
    ],
)
async def test_bad_connections_are_422(api: Api, body, fields) -> None:
    user = await api.user(with_connection=False)
    response = await user.post("/api/v1/connections", body)
    assert response.status_code == 422, response.text
    assert response.json()["fields"] == fields
    assert "k" * 12 not in response.text and "s" * 12 not in response.text  # inputs are not echoed
    assert await api.pool.fetchval("SELECT count(*) FROM exchange_connections WHERE user_id = $1", user.id) == 0


async def test_connection_check_failure_is_422(api: Api) -> None:
    """With verification on, an exchange that cannot be reached is refused with a clear message."""
    user = await api.user(with_connection=False)
    app_ctx_settings = api.settings.model_copy(update={"api_verify_connections": True})
    transport = api.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    transport.app.state.ctx.settings = app_ctx_settings  # type: ignore[attr-defined]
    response = await user.post(
        "/api/v1/connections",
        {"exchangeId": "kraken", "apiKey": "k" * 12, "secret": "s" * 12, "apiUrl": "http://127.0.0.1:9"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["fields"] == ["apiUrl"]
    assert "could not be reached" in response.json()["detail"][0]["msg"]


async def test_connection_in_use_cannot_be_deleted(api: Api) -> None:
    user = await api.user()
    await user.create_portfolio()
    assert (await user.delete(f"/api/v1/connections/{user.connection_id}")).status_code == 409
    spare = await user.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": paper_account("spare")})
    assert (await user.delete(f"/api/v1/connections/{spare.json()['connection']['id']}")).status_code == 204


async def test_a_connection_with_orders_of_unknown_outcome_cannot_be_deleted(api: Api) -> None:
    # A run stopped with a leg that may be on the exchange; its portfolio was deleted since. The
    # reconciler looks the leg up with the connection's key: deleting the connection now would
    # leave a resting order never canceled, or a fill never recorded.
    user, other = await api.user(), await api.user()
    portfolio = await user.create_portfolio()
    assert (await user.delete(f"/api/v1/portfolios/{portfolio['id']}")).status_code == 204
    run_id = str(uuid.uuid4())
    cids = [f"rb-{run_id[:8]}-{leg}" for leg in range(7)]
    for leg, cid in enumerate(cids):
        await api.pool.execute(
            "INSERT INTO order_intents (client_order_id, run_id, leg, portfolio_id, user_id, connection_id, symbol,"
            " side, amount, state) VALUES ($1, $2::uuid, $3, $4::uuid, $5, $6::uuid, 'ETH/USD', 'buy', 1, $7)",
            cid, run_id, leg, portfolio["id"], user.id, user.connection_id, "open" if leg == 0 else "sending",
        )
    await api.pool.execute(  # resolved legs and another user's never count
        "UPDATE order_intents SET state = 'filled' WHERE client_order_id = ANY($1::text[])", cids[5:]
    )
    url = f"/api/v1/connections/{user.connection_id}"
    response = await user.delete(url)
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail.startswith("5 order(s) of unknown outcome on this account are still being looked up: buy ETH/USD")
    assert cids[0] in detail and cids[4] in detail and run_id in detail and cids[5] not in detail
    assert (await user.get(url)).status_code == 200  # nothing deleted
    assert (await other.delete(url)).status_code == 404

    await api.pool.execute("UPDATE order_intents SET state = 'canceled' WHERE client_order_id = ANY($1::text[])", cids)
    assert (await user.delete(url)).status_code == 204
    assert (await user.get(url)).status_code == 404

