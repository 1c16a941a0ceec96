"""The product as a user meets it: every service a separate process, driven only through the REST
API with the seed's contract, on real NATS JetStream and PostgreSQL with the paper exchange.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.api.accounts import create_token, ensure_user
from services.common.db import create_pool
from services.common.devstack import free_port
from services.common.exchanges.paper import PaperExchange, fund_account, seed_markets
from tests.support.pipeline import delete_stream
from tests.support.processes import ServiceProcess, Stack, service_env

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PIPELINE = ("ledger", "executor", "planner", "pricer", "scheduler")
WEIGHTS = {"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}
SEED_BODY: dict[str, Any] = {
    "name": "My Portfolio",
    "targetWeights": WEIGHTS,
    "rebalanceEnabled": True,
    "rebalanceInterval": "weekly",
    "rebalanceThreshold": 10,
}


class Client:
    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()


async def wait_api(url: str, process: ServiceProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert process.running, f"api exited:\n{process.tail()}"
            assert time.monotonic() < deadline, f"api did not answer:\n{process.tail()}"
            await asyncio.sleep(0.1)


async def eventually(probe: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.fixture
async def own_pool(own_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A database of this test's own: the scheduler state and the due portfolios are shared by
    everything that uses a database, and other tests stop and reconfigure the scheduler."""
    pool = await create_pool(own_database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def system(
    own_database_url: str, nats_url: str, namespace: str, tmp_path: Path, own_pool: asyncpg.Pool
) -> AsyncIterator[tuple[Client, str, Stack]]:
    db_pool = own_pool
    port = free_port()
    env = service_env(nats_url=nats_url, database_url=own_database_url, namespace=namespace,
                      extra={"API_PORT": str(port), "API_HOST": "127.0.0.1"})
    running = Stack(env, tmp_path / "logs")
    api = ServiceProcess("api", env, tmp_path / "logs")
    try:
        await running.start(*PIPELINE)
        api.start()
        url = f"http://127.0.0.1:{port}"
        await wait_api(url, api)
        async with db_pool.acquire() as conn:
            user_id = await ensure_user(conn, f"{namespace}@example.com", "E2E", False)
            token = await create_token(conn, user_id, "e2e", ["user"])
        yield Client(url, token), url, running
    except BaseException:
        print(running.logs(), api.tail(80))
        raise
    finally:
        await api.stop()
        await running.stop_all()
        await delete_stream(nats_url, namespace.upper())


async def test_a_seed_portfolio_created_and_triggered_through_the_api_is_rebalanced_and_recorded(
    system: tuple[Client, str, Stack], own_pool: asyncpg.Pool
) -> None:
    client, _url, _stack = system
    db_pool = own_pool
    await seed_markets(db_pool)
    account = f"e2e-{uuid.uuid4().hex[:8]}"
    await fund_account(db_pool, account, {"USD": Decimal("10000")})
    connection = await client.call("POST", "/api/v1/connections",
                                   json={"exchangeId": "paper", "label": "paper", "paperAccount": account})
    connection_id = connection.get("connection", connection)["id"]

    created = await client.call("POST", "/api/portfolios/manage", json={**SEED_BODY, "connectionId": connection_id})
    portfolio_id = created["portfolio"]["id"]
    listed = await client.call("GET", "/api/portfolios/manage")
    assert [p["name"] for p in listed["portfolios"]] == ["My Portfolio"]

    # A dry-run preview through the real pricer and planner: the plan it would execute, nothing traded.
    preview = await client.call("POST", f"/api/v1/portfolios/{portfolio_id}/preview")
    assert preview["decision"] == "rebalance" and len(preview["orders"]) == 4, preview
    assert {d["asset"] for d in preview["drift"]} >= set(WEIGHTS)
    assert len(await PaperExchange(db_pool, account).fetch_balance()) == 1  # still only USD

    await client.call("POST", "/api/scheduler/trigger", json={"portfolioId": portfolio_id})

    async def finished_runs() -> list[dict[str, Any]]:
        history = await client.call("GET", f"/api/v1/portfolios/{portfolio_id}/history")
        return [r for r in history["runs"] if r["success"] is not None and r.get("status") != "running"]

    [run] = await eventually(finished_runs)
    assert run["success"] is True and run["triggeredBy"] == "manual", run
    assert run["ordersPlanned"] == run["ordersExecuted"] == 4 and run["ordersFailed"] == 0
    assert Decimal(run["totalValueTraded"]) > Decimal("9000")

    trades = (await client.call("GET", f"/api/v1/portfolios/{portfolio_id}/trades"))["trades"]
    assert sorted(t["asset"] for t in trades) == ["ADA", "BTC", "ETH", "SOL"]
    assert all(Decimal(t["fee"]) > 0 for t in trades)
    orders = (await client.call("GET", f"/api/v1/portfolios/{portfolio_id}/orders"))["orders"]
    assert sorted(o["leg"] for o in orders) == [0, 1, 2, 3] and {o["status"] for o in orders} == {"filled"}
    assert {o["clientOrderId"] for o in orders} == {t["clientOrderId"] for t in trades}
    assert all(o["runId"] == run["id"] and o["error"] is None for o in orders)
    snapshots = (await client.call("GET", f"/api/v1/portfolios/{portfolio_id}/snapshots"))["snapshots"]
    assert sorted(s["kind"] for s in snapshots) == ["after", "before"]
    activity = (await client.call("GET", f"/api/v1/portfolios/{portfolio_id}/activity"))["activity"]
    assert {"rebalance_triggered", "plan_created", "order_filled", "rebalance_succeeded"} <= {
        a["eventType"] for a in activity
    }

    # The paper account is back at target within the portfolio's threshold (10 pp).
    exchange = PaperExchange(db_pool, account)
    balances, prices = await exchange.fetch_balance(), await exchange.fetch_prices(None)
    values = {a: balances[a].total * prices[f"{a}/USD"] for a in WEIGHTS}
    total = sum(values.values()) + balances["USD"].total
    for asset, weight in WEIGHTS.items():
        assert abs(values[asset] / total * 100 - weight) < 10

    # The scheduler starts runs by itself when next_rebalance_at is reached, and sets the next one.
    await db_pool.execute("UPDATE portfolios SET next_rebalance_at = now() WHERE id = $1::uuid", portfolio_id)

    async def scheduled_run() -> list[dict[str, Any]]:
        return [r for r in await finished_runs() if r["triggeredBy"] == "scheduler"]

    [scheduled] = await eventually(scheduled_run)
    assert scheduled["success"] is True
    row = await db_pool.fetchrow(
        "SELECT next_rebalance_at > now() AS ahead, active_run_id, last_rebalanced_at FROM portfolios"
        " WHERE id = $1::uuid", portfolio_id)
    assert row["ahead"] and row["active_run_id"] is None
