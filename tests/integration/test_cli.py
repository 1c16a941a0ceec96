"""The ``rebalancer`` CLI against a running API (uvicorn on a free port) and the real database."""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import uvicorn
from cryptography.fernet import Fernet

from services.api.app import create_app
from services.api.cli import main
from services.common.devstack import free_port
from services.common.secrets import SecretBox
from tests.integration.test_api_harness import api_settings, insert_order, insert_run, insert_trade, paper_account
from tests.support.pipeline import delete_stream

pytestmark = pytest.mark.integration


@pytest.fixture
async def api_url(database_url: str, nats_url: str, namespace: str) -> AsyncIterator[str]:
    settings = api_settings(database_url, nats_url, namespace)
    port = free_port()
    app = create_app(settings, secret_box=SecretBox([Fernet.generate_key()]))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        assert not task.done(), "the API did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task
    await delete_stream(nats_url, settings.stream_name)


async def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_cli_end_to_end(api_url: str, database_url: str, db_pool, capsys, tmp_path) -> None:
    email = f"cli{uuid.uuid4().hex[:8]}@example.com"
    code, out, _ = await cli(capsys, "admin", "--database-url", database_url, "create-user", email, "--admin")
    assert code == 0 and email in out
    user_id = uuid.UUID(out.split(": ")[1].split()[0])
    code, token, _ = await cli(capsys, "admin", "--database-url", database_url, "create-token", email)
    token = token.strip()
    assert code == 0 and token.startswith("rb_")
    base = ["--api-url", api_url, "--token", token]

    account = paper_account("cli")
    code, out, _ = await cli(capsys, *base, "connections", "add", "--exchange", "paper", "--paper-account", account)
    assert code == 0 and "added connection" in out
    connection_id = out.split()[2]
    code, out, err = await cli(capsys, *base, "connections", "add", "--exchange", "paper", "--paper-account", account)
    assert code != 0 and "paperAccount: this paper account is already connected as your connection" in out + err
    code, out, _ = await cli(capsys, *base, "connections", "list")
    assert "paper" in out and "EXCHANGE" in out
    header, _, row = out.splitlines()[:3]
    assert header.split()[-2:] == ["SHARES", "ACCOUNT"] and row.split()[-1] == "no"  # not another's account

    code, out, _ = await cli(
        capsys,
        *base,
        "portfolios",
        "create",
        "--name",
        "Core",
        "--weights",
        "BTC=60,ETH=40",
        "--interval",
        "daily",
        "--enabled",
    )
    assert code == 0, out
    portfolio_id = out.split()[2]
    code, out, _ = await cli(capsys, *base, "portfolios", "list")
    assert "Core" in out and "BTC:60" in out and "daily" in out
    code, out, _ = await cli(capsys, *base, "portfolios", "update", portfolio_id, "--threshold", "7.5")
    assert code == 0 and "7.5" in out
    code, out, _ = await cli(capsys, *base, "portfolios", "show", portfolio_id)
    assert "rebalanceThreshold" in out and "7.5" in out

    code, _, err = await cli(capsys, *base, "portfolios", "create", "--name", "Bad", "--weights", "BTC=60,ETH=10")
    assert code == 1 and "targetWeights" in err and "sum to 100" in err

    code, out, _ = await cli(capsys, *base, "trigger", portfolio_id)
    assert code == 0 and "run requested" in out

    run_id = await insert_run(db_pool, user_id, portfolio_id, executed_at=datetime(2026, 2, 1, tzinfo=UTC))
    await insert_trade(db_pool, user_id, portfolio_id, run_id, executed_at=datetime(2026, 2, 1, tzinfo=UTC))
    code, out, _ = await cli(capsys, *base, "history", "--portfolio", portfolio_id, "--success")
    assert code == 0 and str(run_id) in out and "1 of 1 run(s)" in out
    code, out, _ = await cli(capsys, *base, "trades")
    assert "BTC" in out and "0.015" in out
    failure = {"stage": "executor", "code": "insufficient_funds", "message": "balance too low", "leg": 1}
    for leg, status in ((0, "filled"), (1, "failed")):
        await insert_order(db_pool, user_id, portfolio_id, run_id, leg=leg, status=status,
                           created_at=datetime(2026, 2, 1, tzinfo=UTC), error=failure if leg else None)
    code, out, _ = await cli(capsys, *base, "orders", "--status", "failed")
    assert code == 0 and "insufficient_funds: balance too low" in out and "1 of 1 order(s)" in out, out
    code, out, _ = await cli(capsys, *base, "orders", "--run", str(run_id))
    assert code == 0 and "filled" in out and "2 of 2 order(s)" in out, out
    code, _, err = await cli(capsys, *base, "orders", "--status", "lost")
    assert code == 1 and "status" in err, err
    target = tmp_path / "trades.csv"
    code, out, _ = await cli(capsys, *base, "trades", "export", "--csv", str(target))
    assert code == 0 and "wrote 1 trade(s)" in out
    rows = list(csv.DictReader(target.open()))
    assert rows[0]["asset"] == "BTC" and rows[0]["run_id"] == str(run_id)
    code, out, _ = await cli(capsys, *base, "stats", "--portfolio", portfolio_id)
    assert "totalValueTraded       100\n" in out and "successRate            100.00" in out

    code, out, _ = await cli(capsys, *base, "scheduler", "status")
    assert code == 0 and "Core" in out
    code, out, _ = await cli(capsys, *base, "scheduler", "stop")
    assert code == 0 and "scheduler stop requested" in out

    code, _, err = await cli(capsys, *base, "connections", "delete", connection_id)
    assert code == 1 and "HTTP 409: portfolios still use this connection" in err, err
    code, out, _ = await cli(capsys, *base, "portfolios", "delete", portfolio_id)
    assert code == 0 and "deleted" in out
    # A leg of unknown outcome, of a run that ended, is in the way until resolved or given up.
    cid = f"rb-cli-{uuid.uuid4().hex[:8]}"
    await db_pool.execute(
        "INSERT INTO order_intents (client_order_id, run_id, leg, portfolio_id, user_id, connection_id, symbol,"
        " side, amount, state) VALUES ($1, $2, 0, $3::uuid, $4, $5::uuid, 'ETH/USD', 'buy', 1, 'sending')",
        cid, run_id, portfolio_id, user_id, connection_id,
    )
    code, _, err = await cli(capsys, *base, "connections", "delete", connection_id)
    assert code == 1 and "HTTP 409: 1 order(s) of unknown outcome" in err and "abandon-orders" in err, err
    code, out, _ = await cli(capsys, *base, "connections", "unresolved", connection_id)
    assert code == 0 and cid in out and "RUN STATUS" in out and "1 order(s) of unknown outcome" in out, out
    code, _, err = await cli(capsys, *base, "connections", "abandon-orders", connection_id, "rb-no-such-order")
    assert code == 1 and "clientOrderIds" in err and "rb-no-such-order" in err, err
    code, out, _ = await cli(capsys, *base, "connections", "abandon-orders", connection_id, cid)
    assert code == 0 and "giving up 1 order(s)" in out, out
    # What the executor then does (tests/integration/test_abandon_orders.py): it is resolved.
    await db_pool.execute("UPDATE order_intents SET state = 'abandoned' WHERE client_order_id = $1", cid)
    code, out, _ = await cli(capsys, *base, "connections", "delete", connection_id)
    assert code == 0 and out.strip() == f"deleted connection {connection_id}", out
    code, out, _ = await cli(capsys, *base, "connections", "list")
    assert connection_id not in out


async def test_cli_reports_auth_and_connection_errors(api_url: str, capsys) -> None:
    code, _, err = await cli(capsys, "--api-url", api_url, "--token", "wrong", "portfolios", "list")
    assert code == 1 and "401" in err
    code, _, err = await cli(capsys, "--api-url", "http://127.0.0.1:9", "--token", "x", "stats")
    assert code == 1 and "cannot reach the API" in err


async def test_cli_gives_a_connection_a_new_key_prompting_for_nothing_it_can_read(
    api_url: str, database_url: str, db_pool, capsys, monkeypatch
) -> None:
    email = f"key{uuid.uuid4().hex[:8]}@example.com"
    code, out, _ = await cli(capsys, "admin", "--database-url", database_url, "create-user", email)
    code, token, _ = await cli(capsys, "admin", "--database-url", database_url, "create-token", email)
    base = ["--api-url", api_url, "--token", token.strip()]
    monkeypatch.setenv("REBALANCER_API_SECRET", "first-secret-value")
    code, out, _ = await cli(capsys, *base, "connections", "add", "--exchange", "kraken", "--api-key", "first-key-0001")
    assert code == 0, out
    connection_id = out.split()[2]
    code, out, _ = await cli(capsys, *base, "connections", "add", "--exchange", "paper", "--paper-account",
                             paper_account("key"))
    paper_id = out.split()[2]

    monkeypatch.setenv("REBALANCER_API_KEY", "second-key-0002")
    monkeypatch.setenv("REBALANCER_API_SECRET", "second-secret-value")
    code, out, err = await cli(capsys, *base, "connections", "set-key", connection_id)
    assert code == 0 and out.strip() == f"connection {connection_id} now uses key seco…02", (out, err)
    assert "second-key-0002" not in out and "second-secret-value" not in out
    hint = await db_pool.fetchval("SELECT api_key_hint FROM exchange_connections WHERE id = $1::uuid", connection_id)
    assert hint == "seco…02"
    code, _, err = await cli(capsys, *base, "connections", "set-key", paper_id)
    assert code == 1 and "apiKey" in err and "paper exchange takes no keys" in err, err
