"""One fixed, fully populated sample of every v1 message: fixed ids and times, so that its JSON is
stable and can be compared with the golden files."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from contracts.envelope import Envelope
from contracts.v1 import (
    AbandonOrders,
    AssetDrift,
    ConnectionChanged,
    Fill,
    Holding,
    LeftOutLeg,
    MarketRule,
    OrderFailed,
    OrderFilled,
    OrderRejected,
    OrdersReported,
    OrderSubmitted,
    PlanCreated,
    PlannedOrder,
    PortfolioValued,
    RebalanceCompleted,
    RebalanceDue,
    RebalanceRequested,
    ReportedOrder,
    RunError,
    SchedulerControl,
    Strategy,
)

RUN_ID = "0b6f0c1e-1f2a-4c3d-8e4f-5a6b7c8d9e0f"
PORTFOLIO_ID = "11111111-2222-4333-8444-555555555555"
USER_ID = "66666666-7777-4888-8999-aaaaaaaaaaaa"
CONNECTION_ID = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
STARTED_AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
OCCURRED_AT = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)

STRATEGY = Strategy(
    portfolio_id=PORTFOLIO_ID,
    user_id=USER_ID,
    name="60/30/10",
    connection_id=CONNECTION_ID,
    exchange_id="kraken",
    target_weights={"BTC": Decimal("60"), "ETH": Decimal("30"), "USDC": Decimal("10")},
    quote_currency="USD",
    threshold=Decimal("5.0"),
    threshold_kind="relative",
    mode="band",
    max_orders=4,
    dry_run=True,
    always_rebalance=False,
    leave_alone=("DOGE",),
    cash_reserve=Decimal("25.00"),
    order_type="limit",
    limit_timeout_seconds=90,
)
HOLDINGS = [
    Holding(asset="BTC", free=Decimal("0.10000000"), total=Decimal("0.10000000")),
    Holding(asset="USDC", free=Decimal("1500.5"), total=Decimal("1600.5")),
]
PRICES = {"BTC": Decimal("65000.10"), "ETH": Decimal("3100"), "USDC": Decimal("1.0001")}
MARKETS = [
    MarketRule(
        symbol="BTC/USD",
        base="BTC",
        quote="USD",
        min_amount=Decimal("0.0001"),
        min_cost=Decimal("5"),
        amount_step=Decimal("0.00000001"),
        price_step=Decimal("0.1"),
        maker_fee=Decimal("0.0016"),
        taker_fee=Decimal("0.0026"),
    ),
]


def _stage() -> dict[str, object]:
    """The envelope and run fields shared by every run message."""
    return {
        "correlation_id": RUN_ID,
        "causation_id": "c0ffee00-0000-4000-8000-000000000001",
        "occurred_at": OCCURRED_AT,
        "run_id": RUN_ID,
        "portfolio_id": PORTFOLIO_ID,
        "user_id": USER_ID,
        "triggered_by": "scheduler",
        "started_at": STARTED_AT,
    }


def _order(cls: type[OrderSubmitted] | type[OrderFilled] | type[OrderRejected] | type[OrderFailed],
           message_id: str, fill: Fill, error: RunError | None) -> Envelope:
    return cls(
        message_id=message_id,
        **_stage(),  # type: ignore[arg-type]
        dry_run=False,
        exchange_id="kraken",
        leg=1,
        client_order_id="rb-0b6f0c1e-1",
        symbol="ETH/USD",
        side="buy",
        amount=Decimal("0.25000000"),
        order_type="limit",
        fill=fill,
        error=error,
    )


def samples() -> dict[str, Envelope]:
    """Every v1 message type by class name, each a fixed, fully populated instance."""
    plan_orders = [
        PlannedOrder(
            leg=0,
            symbol="BTC/USD",
            base="BTC",
            quote="USD",
            side="sell",
            amount=Decimal("0.01000000"),
            price=Decimal("65000.10"),
            value=Decimal("650.001"),
            fee=Decimal("1.690002600"),
            order_type="limit",
            limit_price=Decimal("64990.0"),
        )
    ]
    filled = Fill(
        exchange_order_id="OABC12-DEF34-GHI56",
        status="closed",
        filled=Decimal("0.25000000"),
        average_price=Decimal("3100.50"),
        cost=Decimal("775.125"),
        fee=Decimal("2.015325"),
        fee_currency="USD",
        value=Decimal("775.125"),
    )
    rejected = RunError(stage="executor", code="insufficient_funds", message="not enough USD", leg=1)
    messages: list[Envelope] = [
        RebalanceRequested(
            message_id="a0000000-0000-4000-8000-000000000001",
            correlation_id=RUN_ID,
            occurred_at=OCCURRED_AT,
            portfolio_id=PORTFOLIO_ID,
            requested_by=USER_ID,
            triggered_by="manual",
            dry_run=True,
        ),
        SchedulerControl(
            message_id="a0000000-0000-4000-8000-000000000002",
            correlation_id="control-1",
            occurred_at=OCCURRED_AT,
            action="update-config",
            check_interval="5m",
            dry_run_mode=False,
        ),
        AbandonOrders(
            message_id="a0000000-0000-4000-8000-000000000020",
            correlation_id="abandon-1",
            occurred_at=OCCURRED_AT,
            user_id=USER_ID,
            connection_id="c0000000-0000-4000-8000-000000000001",
            client_order_ids=["rb-0a1b2c3d-1", "rb-0a1b2c3d-2"],
        ),
        ConnectionChanged(
            message_id="a0000000-0000-4000-8000-000000000021",
            correlation_id="key-1",
            occurred_at=OCCURRED_AT,
            connection_id="c0000000-0000-4000-8000-000000000001",
        ),
        RebalanceDue(
            message_id="a0000000-0000-4000-8000-000000000003",
            **_stage(),  # type: ignore[arg-type]
            strategy=STRATEGY,
            due_at=datetime(2026, 1, 2, 3, 0, tzinfo=UTC),
        ),
        PortfolioValued(
            message_id="a0000000-0000-4000-8000-000000000004",
            **_stage(),  # type: ignore[arg-type]
            strategy=STRATEGY,
            holdings=HOLDINGS,
            prices=PRICES,
            total_value=Decimal("8101.50160000"),
            markets=MARKETS,
        ),
        PlanCreated(
            message_id="a0000000-0000-4000-8000-000000000005",
            **_stage(),  # type: ignore[arg-type]
            strategy=STRATEGY,
            decision="rebalance",
            reason="BTC drift +20.1 pp beyond ±5 pp",
            portfolio_value=Decimal("8101.5016"),
            holdings=HOLDINGS,
            prices=PRICES,
            drift=[
                AssetDrift(
                    asset="BTC",
                    value=Decimal("6500.01"),
                    current_weight=Decimal("80.2316"),
                    target_weight=Decimal("60"),
                    drift=Decimal("20.2316"),
                )
            ],
            orders=plan_orders,
            left_out=[LeftOutLeg(asset="ETH", side="buy", value=Decimal("3.10"), reason="below minimum cost")],
            expected_weights={"BTC": Decimal("60.0100"), "USDC": Decimal("39.9900")},
            estimated_fees=Decimal("1.690002600"),
            turnover=Decimal("650.001"),
        ),
        _order(OrderSubmitted, "a0000000-0000-4000-8000-000000000006", Fill(status="open"), None),
        _order(OrderFilled, "a0000000-0000-4000-8000-000000000007", filled, None),
        _order(OrderRejected, "a0000000-0000-4000-8000-000000000008", Fill(status="rejected"), rejected),
        _order(
            OrderFailed,
            "a0000000-0000-4000-8000-000000000009",
            Fill(status="rejected"),
            RunError(stage="executor", code="auth", message="invalid key", leg=None),
        ),
        OrdersReported(
            message_id="a0000000-0000-4000-8000-000000000011",
            **_stage(),  # type: ignore[arg-type]
            orders=[
                ReportedOrder(
                    outcome="filled",
                    event_id="a0000000-0000-4000-8000-000000000012",
                    occurred_at=OCCURRED_AT,
                    dry_run=False,
                    exchange_id="kraken",
                    leg=0,
                    client_order_id="rb-0b6f0c1e-0",
                    symbol="BTC/USD",
                    side="sell",
                    amount=Decimal("0.01000000"),
                    fill=filled,
                ),
                ReportedOrder(
                    outcome="rejected",
                    event_id="a0000000-0000-4000-8000-000000000013",
                    occurred_at=OCCURRED_AT,
                    dry_run=False,
                    exchange_id="kraken",
                    leg=1,
                    client_order_id="rb-0b6f0c1e-1",
                    symbol="ETH/USD",
                    side="buy",
                    amount=Decimal("0.25000000"),
                    order_type="limit",
                    fill=Fill(status="rejected"),
                    error=rejected,
                ),
            ],
        ),
        RebalanceCompleted(
            message_id="a0000000-0000-4000-8000-000000000010",
            **_stage(),  # type: ignore[arg-type]
            status="partial",
            dry_run=False,
            reason="1 of 2 orders not filled",
            quote_currency="USD",
            portfolio_value=Decimal("8101.5016"),
            value_after=Decimal("8099.10"),
            holdings_after=HOLDINGS,
            orders_planned=2,
            orders_executed=1,
            orders_failed=1,
            total_value_traded=Decimal("775.125"),
            fees=Decimal("2.015325"),
            errors=[rejected],
            completed_at=datetime(2026, 1, 2, 3, 5, tzinfo=UTC),
        ),
    ]
    return {type(m).__name__: m for m in messages}
