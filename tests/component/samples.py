"""Messages for component tests: a valued portfolio over BTC/ETH/USD with simple market rules."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from contracts.envelope import derived_id
from contracts.v1 import Holding, MarketRule, PortfolioValued, RebalanceDue, Strategy

PRICES = {"BTC": Decimal("50000"), "ETH": Decimal("2500"), "USD": Decimal("1")}
MARKETS = [
    MarketRule(symbol="BTC/USD", base="BTC", quote="USD", min_cost=Decimal("5"), amount_step=Decimal("0.00001")),
    MarketRule(symbol="ETH/USD", base="ETH", quote="USD", min_cost=Decimal("5"), amount_step=Decimal("0.0001")),
]


def strategy(
    weights: Mapping[str, str] | None = None,
    *,
    dry_run: bool = True,
    connection_id: str | None = None,
    exchange_id: str = "paper",
) -> Strategy:
    return Strategy(
        portfolio_id=str(uuid.uuid4()),
        user_id=str(uuid.uuid4()),
        name="Component",
        connection_id=connection_id or str(uuid.uuid4()),
        exchange_id=exchange_id,
        target_weights={k: Decimal(v) for k, v in (weights or {"BTC": "50", "ETH": "30", "USD": "20"}).items()},
        dry_run=dry_run,
    )


def due(strat: Strategy, *, run_id: str | None = None) -> RebalanceDue:
    run_id = run_id or str(uuid.uuid4())
    now = datetime.now(UTC)
    return RebalanceDue(
        message_id=derived_id(run_id, "due"),
        correlation_id=run_id,
        run_id=run_id,
        portfolio_id=strat.portfolio_id,
        user_id=strat.user_id,
        triggered_by="manual",
        started_at=now,
        strategy=strat,
        due_at=now,
    )


def valued(strat: Strategy, balances: Mapping[str, str], *, run_id: str | None = None) -> PortfolioValued:
    """What the pricer would emit for these balances at PRICES."""
    source = due(strat, run_id=run_id)
    holdings = [Holding(asset=a, free=Decimal(q), total=Decimal(q)) for a, q in balances.items()]
    total = sum((h.total * PRICES[h.asset] for h in holdings), Decimal(0))
    return PortfolioValued(
        message_id=derived_id(source.run_id, "valued"),
        **source.caused(),
        run_id=source.run_id,
        portfolio_id=strat.portfolio_id,
        user_id=strat.user_id,
        triggered_by=source.triggered_by,
        started_at=source.started_at,
        strategy=strat,
        holdings=holdings,
        prices={a: p for a, p in PRICES.items() if a in strat.target_weights or a in balances},
        total_value=total,
        markets=MARKETS,
    )
