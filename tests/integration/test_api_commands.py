"""Manual triggers, scheduler control and the dry-run preview, over real NATS."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import nats
import pytest

from contracts.v1.messages import PlanCreated, PortfolioValued, RebalanceDue, RebalanceRequested, SchedulerControl
from contracts.v1.strategy import AssetDrift, Holding, PlannedOrder
from tests.integration.test_api_harness import Api, api_fixture, paper_account  # noqa: F401

pytestmark = pytest.mark.integration


async def _last_on_stream(api: Api, subject: str) -> tuple[bytes, dict[str, str]]:
    nc = await nats.connect(api.settings.nats_url)
    try:
        msg = await nc.jetstream().get_last_msg(api.settings.stream_name, subject)
        return msg.data or b"", dict(msg.headers or {})
    finally:
        await nc.close()


async def test_trigger_publishes_rebalance_requested(api: Api) -> None:
    user = await api.user()
    portfolio = await user.create_portfolio()
    response = await user.post("/api/scheduler/trigger", {"portfolioId": portfolio["id"]})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True and body["runRequested"] is True

    data, headers = await _last_on_stream(api, api.settings.subjects.rebalance_request)
    sent = RebalanceRequested.model_validate_json(data)
    assert sent.message_id == body["messageId"] == headers["Nats-Msg-Id"]
    assert sent.portfolio_id == portfolio["id"]
    assert sent.requested_by == str(user.id)
    assert sent.triggered_by == "manual"

    v1 = await user.post(f"/api/v1/portfolios/{portfolio['id']}/trigger", {"dryRun": True})
    assert v1.status_code == 202
    data, _ = await _last_on_stream(api, api.settings.subjects.rebalance_request)
    assert RebalanceRequested.model_validate_json(data).dry_run is True


async def test_trigger_refuses_active_run_and_unknown_portfolio(api: Api) -> None:
    user = await api.user()
    portfolio = await user.create_portfolio()
    run_id = uuid.uuid4()
    await api.pool.execute("UPDATE portfolios SET active_run_id = $1 WHERE id = $2", run_id, uuid.UUID(portfolio["id"]))
    response = await user.post("/api/scheduler/trigger", {"portfolioId": portfolio["id"]})
    assert response.status_code == 409
    assert "in progress" in response.json()["error"] and str(run_id) in response.json()["error"]
    # Deleting a portfolio mid-run is refused as well.
    assert (await user.delete("/api/portfolios/manage", id=portfolio["id"])).status_code == 409

    missing = await user.post("/api/scheduler/trigger", {"portfolioId": str(uuid.uuid4())})
    assert missing.status_code == 404


async def test_a_live_trigger_needs_the_exchange_account_to_itself(api: Api) -> None:
    # A run values and trades the whole account: a dry-run portfolio is not triggered live beside the
    # account's live portfolio (422 naming dryRun), a live portfolio made after another on the account
    # is not triggered live (409), and no live run starts while another trades the account (409).
    # None publishes anything; a dry-run trigger is accepted in each case.
    user = await api.user()
    core = await user.create_portfolio(name="Core")
    simulated = await user.create_portfolio(name="What if", dryRun=True, targetWeights={"BTC": 100})
    subject = api.settings.subjects.rebalance_request
    accepted = await user.post(f"/api/v1/portfolios/{simulated['id']}/trigger", {"dryRun": True})
    assert accepted.status_code == 202, accepted.text
    last = await _last_on_stream(api, subject)

    for route, body in ((f"/api/v1/portfolios/{simulated['id']}/trigger", {"dryRun": False}),
                        ("/api/scheduler/trigger", {"portfolioId": simulated["id"], "dryRun": False})):
        refused = await user.post(route, body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["fields"] == ["dryRun"] and "'Core'" in refused.text and core["id"] in refused.text
    assert await _last_on_stream(api, subject) == last

    # A second live portfolio on the account, made before the API refused them: the account is the
    # first's, so a live trigger of the second is a 409 naming it (the scheduler fails its live runs
    # too); a dry run of it may start.
    await api.pool.execute("UPDATE portfolios SET dry_run = false WHERE id = $1", uuid.UUID(simulated["id"]))
    second = await user.post(f"/api/v1/portfolios/{simulated['id']}/trigger")
    assert second.status_code == 409, second.text
    assert f"portfolio 'Core' ({core['id']}) was made first" in second.text
    assert await _last_on_stream(api, subject) == last
    dry = await user.post(f"/api/v1/portfolios/{simulated['id']}/trigger", {"dryRun": True})
    assert dry.status_code == 202, dry.text
    last = await _last_on_stream(api, subject)
    kept_by = {p["name"]: p["accountKeptBy"] for p in (await user.get("/api/portfolios/manage")).json()["portfolios"]}
    assert kept_by == {"Core": None, "What if": core["id"]}
    assert (await user.get(f"/api/v1/portfolios/{simulated['id']}")).json()["accountKeptBy"] == core["id"]

    # With no live portfolio, dry-run ones may be triggered live, one at a time: while one's live
    # run trades the account, another's live trigger is a 409 naming that run.
    for portfolio in (core, simulated):
        made_dry = await user.put("/api/portfolios/manage", {"id": portfolio["id"], "dryRun": True})
        assert made_dry.status_code == 200, made_dry.text
        assert made_dry.json()["portfolio"]["accountKeptBy"] is None
    run_id = uuid.uuid4()
    await api.pool.execute(
        "UPDATE portfolios SET active_run_id = $1, active_run_dry_run = false WHERE id = $2",
        run_id,
        uuid.UUID(simulated["id"]),
    )
    busy = await user.post(f"/api/v1/portfolios/{core['id']}/trigger", {"dryRun": False})
    assert busy.status_code == 409, busy.text
    assert "'What if'" in busy.text and str(run_id) in busy.text and "one live run per account" in busy.text
    assert await _last_on_stream(api, subject) == last
    # A dry run in progress does not hold the account.
    await api.pool.execute("UPDATE portfolios SET active_run_dry_run = true WHERE id = $1",
                           uuid.UUID(simulated["id"]))
    assert (await user.post(f"/api/v1/portfolios/{core['id']}/trigger", {"dryRun": False})).status_code == 202


async def test_a_portfolio_stays_on_its_account_while_its_run_trades_it(api: Api) -> None:
    # Moved mid-run, the portfolio would leave the account its run trades looking free of live runs.
    user = await api.user()
    portfolio = await user.create_portfolio(name="Core")
    other = await user.post("/api/v1/connections", {"exchangeId": "paper", "paperAccount": paper_account("other")})
    other_id = other.json()["connection"]["id"]
    run_id = uuid.uuid4()
    await api.pool.execute(
        "UPDATE portfolios SET active_run_id = $1, active_run_dry_run = false WHERE id = $2",
        run_id,
        uuid.UUID(portfolio["id"]),
    )
    moved = await user.put("/api/portfolios/manage", {"id": portfolio["id"], "connectionId": other_id})
    assert moved.status_code == 409, moved.text
    assert "rebalance in progress" in moved.text and str(run_id) in moved.text
    assert (await user.get(f"/api/v1/portfolios/{portfolio['id']}")).json()["connectionId"] == user.connection_id
    renamed = await user.put("/api/portfolios/manage", {"id": portfolio["id"], "name": "Core 2"})
    assert renamed.status_code == 200, renamed.text
    await api.pool.execute("UPDATE portfolios SET active_run_id = NULL WHERE id = $1", uuid.UUID(portfolio["id"]))
    moved = await user.put("/api/portfolios/manage", {"id": portfolio["id"], "connectionId": other_id})
    assert moved.status_code == 200 and moved.json()["portfolio"]["connectionId"] == other_id, moved.text


async def test_scheduler_control_needs_admin_and_publishes(api: Api) -> None:
    user = await api.user()
    forbidden = await user.post("/api/scheduler", {"action": "stop"})
    assert forbidden.status_code == 403

    admin = await api.user(admin=True)
    response = await admin.post(
        "/api/scheduler", {"action": "update-config", "config": {"checkInterval": "*/5 * * * *", "dryRunMode": True}}
    )
    assert response.status_code == 202, response.text
    data, _ = await _last_on_stream(api, api.settings.subjects.scheduler_control)
    sent = SchedulerControl.model_validate_json(data)
    assert (sent.action, sent.check_interval, sent.dry_run_mode) == ("update-config", "*/5 * * * *", True)
    assert sent.message_id == response.json()["messageId"]

    bad = await admin.post("/api/scheduler", {"action": "update-config", "config": {"checkInterval": "often"}})
    assert bad.status_code == 422 and bad.json()["fields"] == ["config.checkInterval"]
    empty = await admin.post("/api/scheduler", {"action": "update-config"})
    assert empty.status_code == 422 and empty.json()["fields"] == ["config"]


async def test_admin_scope_needs_an_admin_user(api: Api) -> None:
    """A token carrying the admin scope for a user who is not an admin gets no admin rights."""
    user = await api.user()
    await api.pool.execute("UPDATE api_tokens SET scopes = '{user,admin}' WHERE user_id = $1", user.id)
    assert (await user.post("/api/scheduler", {"action": "start"})).status_code == 403


async def test_scheduler_status(api: Api) -> None:
    user = await api.user()
    portfolio = await user.create_portfolio()
    await api.pool.execute(
        "INSERT INTO scheduler_state (id, is_running, check_interval, dry_run_mode)"
        " VALUES (1, true, '*/10 * * * *', false)"
        " ON CONFLICT (id) DO UPDATE SET is_running = true, check_interval = '*/10 * * * *'"
    )
    await api.pool.execute(
        "UPDATE portfolios SET active_run_id = gen_random_uuid() WHERE id = $1", uuid.UUID(portfolio["id"])
    )
    body = (await user.get("/api/scheduler")).json()
    assert body["success"] is True
    assert body["status"]["isRunning"] is True
    assert body["status"]["config"]["checkInterval"] == "*/10 * * * *"
    assert body["status"]["activeTasks"] == 1
    assert [e["id"] for e in body["schedule"]] == [portfolio["id"]]
    assert set(body["schedule"][0]) == {"id", "name", "rebalanceInterval", "lastRebalancedAt", "nextRebalanceAt"}


async def test_preview_without_responders_is_503(api: Api) -> None:
    user = await api.user()
    portfolio = await user.create_portfolio()
    response = await user.post(f"/api/v1/portfolios/{portfolio['id']}/preview")
    assert response.status_code == 503
    assert "pricer" in response.json()["error"]


async def test_preview_asks_pricer_then_planner(api: Api) -> None:
    user = await api.user()
    portfolio = await user.create_portfolio(targetWeights={"BTC": 50, "USD": 50})
    subjects = api.settings.subjects
    seen: dict[str, object] = {}
    nc = await nats.connect(api.settings.nats_url)

    async def pricer(msg) -> None:
        due = RebalanceDue.model_validate_json(msg.data)
        seen["due"] = due
        valued = PortfolioValued(
            **due.caused(),
            run_id=due.run_id,
            portfolio_id=due.portfolio_id,
            user_id=due.user_id,
            triggered_by=due.triggered_by,
            started_at=due.started_at,
            strategy=due.strategy,
            holdings=[Holding(asset="USD", free=Decimal("1000"), total=Decimal("1000"))],
            prices={"BTC": Decimal("50000"), "USD": Decimal("1")},
            total_value=Decimal("1000"),
            markets=[],
        )
        await msg.respond(valued.model_dump_json().encode())

    async def planner(msg) -> None:
        valued = PortfolioValued.model_validate_json(msg.data)
        plan = PlanCreated(
            **valued.caused(),
            run_id=valued.run_id,
            portfolio_id=valued.portfolio_id,
            user_id=valued.user_id,
            triggered_by=valued.triggered_by,
            started_at=valued.started_at,
            strategy=valued.strategy,
            decision="rebalance",
            reason="drift 50pp > 10pp",
            portfolio_value=Decimal("1000"),
            holdings=valued.holdings,
            prices=valued.prices,
            drift=[
                AssetDrift(
                    asset="BTC",
                    value=Decimal("0"),
                    current_weight=Decimal("0"),
                    target_weight=Decimal("50"),
                    drift=Decimal("-50"),
                )
            ],
            orders=[
                PlannedOrder(
                    leg=0,
                    symbol="BTC/USD",
                    base="BTC",
                    quote="USD",
                    side="buy",
                    amount=Decimal("0.01"),
                    price=Decimal("50000"),
                    value=Decimal("500"),
                    fee=Decimal("0.5"),
                )
            ],
            estimated_fees=Decimal("0.5"),
            turnover=Decimal("500"),
        )
        await msg.respond(plan.model_dump_json().encode())

    await nc.subscribe(subjects.rpc_value_portfolio, cb=pricer)
    await nc.subscribe(subjects.rpc_preview_plan, cb=planner)
    await nc.flush()
    try:
        response = await user.post(f"/api/v1/portfolios/{portfolio['id']}/preview")
    finally:
        await nc.close()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "rebalance"
    assert body["orders"][0]["symbol"] == "BTC/USD" and body["orders"][0]["amount"] == "0.01"
    assert body["estimatedFees"] == "0.5" and body["drift"][0]["drift"] == "-50"
    due = seen["due"]
    assert isinstance(due, RebalanceDue)
    assert due.triggered_by == "api" and due.strategy.dry_run is True
    assert due.strategy.exchange_id == "paper" and due.portfolio_id == portfolio["id"]
    # Nothing was traded or recorded.
    assert (
        await api.pool.fetchval(
            "SELECT count(*) FROM rebalance_runs WHERE portfolio_id = $1", uuid.UUID(portfolio["id"])
        )
        == 0
    )


async def test_preview_relays_a_pricer_error(api: Api) -> None:
    user = await api.user()
    portfolio = await user.create_portfolio()
    nc = await nats.connect(api.settings.nats_url)

    async def pricer(msg) -> None:
        await msg.respond(json.dumps({"error": "no price for ADA"}).encode())

    await nc.subscribe(api.settings.subjects.rpc_value_portfolio, cb=pricer)
    await nc.flush()
    try:
        response = await user.post(f"/api/v1/portfolios/{portfolio['id']}/preview")
    finally:
        await nc.close()
    assert response.status_code == 422
    assert "no price for ADA" in response.json()["error"]
