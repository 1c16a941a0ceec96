"""Request and response bodies, with the seed's camelCase field names.

Decimals travel as strings in responses (exact, never floats); requests accept numbers or strings.
Field-level rules live here (each bad field is named in the 422); rules that span fields are in
``validation.schedule_problems`` and raised by the routes in the same 422 format.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    field_validator,
)
from pydantic.alias_generators import to_camel

from services.api import validation

Money = Annotated[
    Decimal,
    BeforeValidator(lambda v: validation.to_decimal(v, "the value")),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
ThresholdKind = Literal["absolute", "relative", "value"]
RebalanceMode = Literal["target", "band"]
OrderType = Literal["market", "limit"]
TriggeredBy = Literal["scheduler", "manual", "threshold", "api"]
OrderStatus = Literal[
    "submitted", "open", "filled", "partially_filled", "rejected", "failed", "canceled", "abandoned"
]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class InputModel(CamelModel):
    # Unknown fields are an error: a typo ("targetWeight") must not be silently ignored.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# ---------------------------------------------------------------- portfolios
class PortfolioFields(InputModel):
    """Every writable field; all optional so that PUT can change any subset."""

    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    target_weights: dict[str, Any] | None = Field(
        None, description="Percent per asset, summing to 100 (normalized within 0.1).",
        json_schema_extra={"example": {"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}},
    )
    rebalance_enabled: bool | None = None
    rebalance_interval: Annotated[str, Field(max_length=100)] | None = Field(
        None, description="hourly, daily, weekly, monthly, threshold, cron, or a cron expression"
    )
    rebalance_threshold: Money | None = None
    max_orders_per_rebalance: Annotated[int, Field(ge=1, le=100)] | None = None
    connection_id: UUID | None = None
    quote_currency: Annotated[str, Field(max_length=16)] | None = None
    threshold_kind: ThresholdKind | None = None
    rebalance_mode: RebalanceMode | None = None
    always_rebalance: bool | None = None
    dry_run: bool | None = None
    cron: Annotated[str, Field(max_length=100)] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = None
    leave_alone: Annotated[list[str], Field(max_length=50)] | None = None
    cash_reserve: Money | None = None
    order_type: OrderType | None = None
    limit_timeout_seconds: Annotated[int, Field(ge=5, le=3600)] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("the name must not be blank")
        return value.strip() if value is not None else None

    @field_validator("target_weights")
    @classmethod
    def _weights(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else dict(validation.target_weights(value))

    @field_validator("rebalance_interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is None:
            return None
        validation.interval(value)
        return value.strip()

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else validation.cron_expression(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else validation.timezone(value)

    @field_validator("quote_currency")
    @classmethod
    def _quote(cls, value: str | None) -> str | None:
        return None if value is None else validation.symbol(value)

    @field_validator("leave_alone")
    @classmethod
    def _leave_alone(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else validation.distinct_symbols(value, "leaveAlone")

    @field_validator("rebalance_threshold")
    @classmethod
    def _threshold(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value <= 0:
            raise ValueError("the threshold must be above 0")
        return value

    @field_validator("cash_reserve")
    @classmethod
    def _cash(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value < 0:
            raise ValueError("the cash reserve cannot be negative")
        return value


class PortfolioCreate(PortfolioFields):
    name: Annotated[str, Field(min_length=1, max_length=100)]  # type: ignore[assignment]
    target_weights: dict[str, Any] = Field(  # type: ignore[assignment]
        description="Percent per asset, summing to 100 (normalized within 0.1).",
        json_schema_extra={"example": {"BTC": 40, "ETH": 30, "SOL": 20, "ADA": 10}},
    )


class PortfolioUpdate(PortfolioFields):
    id: UUID | None = None  # the seed's PUT carries the id in the body


class PortfolioOut(CamelModel):
    id: UUID
    name: str
    target_weights: dict[str, Money]
    rebalance_enabled: bool
    rebalance_interval: str
    rebalance_threshold: Money
    max_orders_per_rebalance: int | None
    last_rebalanced_at: datetime | None
    next_rebalance_at: datetime | None
    created_at: datetime
    updated_at: datetime
    connection_id: UUID
    quote_currency: str
    threshold_kind: str
    rebalance_mode: str
    always_rebalance: bool
    dry_run: bool
    cron: str | None
    timezone: str
    leave_alone: list[str]
    cash_reserve: Money
    order_type: str
    limit_timeout_seconds: int
    active_run_id: UUID | None
    # Another live portfolio made first on this one's connection (before the API refused a second):
    # it keeps the account, and this portfolio's live runs fail with second_live_portfolio.
    account_kept_by: UUID | None = None


class PortfolioEnvelope(BaseModel):
    success: bool = True
    portfolio: PortfolioOut


class PortfolioListEnvelope(BaseModel):
    success: bool = True
    portfolios: list[PortfolioOut]


class Deleted(BaseModel):
    success: bool = True
    deleted: UUID


class IdBody(InputModel):
    id: UUID


# ---------------------------------------------------------------- errors
class ErrorBody(BaseModel):
    success: Literal[False] = False
    error: str
    detail: Any = None


# ---------------------------------------------------------------- commands
class TriggerBody(InputModel):
    portfolio_id: UUID
    dry_run: bool | None = None


class TriggerV1Body(InputModel):
    dry_run: bool | None = None


class TriggerAccepted(CamelModel):
    success: bool = True
    run_requested: bool = True
    message_id: str
    portfolio_id: UUID


class SchedulerConfigIn(InputModel):
    check_interval: Annotated[str | int, Field()] | None = None
    dry_run_mode: bool | None = None

    @field_validator("check_interval")
    @classmethod
    def _check_interval(cls, value: str | int | None) -> str | None:
        return None if value is None else validation.check_interval(str(value))


class SchedulerCommand(InputModel):
    action: Literal["start", "stop", "restart", "update-config"]
    config: SchedulerConfigIn | None = None


class SchedulerCommandAccepted(CamelModel):
    success: bool = True
    action: str
    message_id: str


class SchedulerConfigOut(CamelModel):
    enabled: bool
    check_interval: str | None
    dry_run_mode: bool


class SchedulerStatusOut(CamelModel):
    is_running: bool
    config: SchedulerConfigOut
    active_tasks: int


class ScheduleEntry(CamelModel):
    id: UUID
    name: str
    rebalance_interval: str
    last_rebalanced_at: datetime | None
    next_rebalance_at: datetime | None


class SchedulerEnvelope(BaseModel):
    success: bool = True
    status: SchedulerStatusOut
    schedule: list[ScheduleEntry]


# ---------------------------------------------------------------- connections
class ConnectionCreate(InputModel):
    exchange_id: Annotated[str, Field(min_length=1, max_length=40)]
    label: Annotated[str, Field(max_length=100)] = ""
    api_key: Annotated[SecretStr, Field(max_length=512)] | None = None
    secret: Annotated[SecretStr, Field(max_length=4096)] | None = None
    passphrase: Annotated[SecretStr, Field(max_length=512)] | None = None
    api_url: Annotated[str, Field(max_length=300)] | None = None
    sandbox: bool = False
    paper_account: Annotated[str, Field(max_length=64)] | None = None

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else validation.api_url(value)

    @field_validator("paper_account")
    @classmethod
    def _paper(cls, value: str | None) -> str | None:
        return None if value is None else validation.paper_account(value)


class ConnectionCredentials(InputModel):
    """A new API key for an existing connection (the old one was revoked, expired or rotated)."""

    api_key: Annotated[SecretStr, Field(max_length=512)]
    secret: Annotated[SecretStr, Field(max_length=4096)]
    passphrase: Annotated[SecretStr, Field(max_length=512)] | None = None


class ConnectionOut(CamelModel):
    id: UUID
    exchange_id: str
    label: str
    api_key_hint: str
    api_url: str | None
    sandbox: bool
    paper_account: str | None
    created_at: datetime
    updated_at: datetime
    # The exchange names its account as another connection's (migration 015): live runs refused.
    shares_account: bool = False


class ConnectionList(BaseModel):
    success: bool = True
    connections: list[ConnectionOut]


class ConnectionEnvelope(BaseModel):
    success: bool = True
    connection: ConnectionOut


class UnresolvedOrderOut(CamelModel):
    """An order whose request may have reached the exchange and whose outcome is not known yet:
    the executor's reconciler looks it up with the connection's key."""

    client_order_id: str
    run_id: UUID
    # running, succeeded, partial or failed; None while the history has not recorded the run.
    run_status: str | None
    symbol: str
    side: str
    state: str = Field(description="sending (the request may have reached the exchange) | open (resting)")


class UnresolvedOrderList(BaseModel):
    success: bool = True
    orders: list[UnresolvedOrderOut]


class AbandonOrdersIn(InputModel):
    client_order_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]], Field(min_length=1, max_length=500)
    ]


class AbandonOrdersAccepted(CamelModel):
    success: bool = True
    message_id: str
    orders: list[UnresolvedOrderOut]


# ---------------------------------------------------------------- history
class RunOut(CamelModel):
    id: UUID
    portfolio_id: UUID
    portfolio_name: str
    executed_at: datetime
    started_at: datetime
    success: bool | None
    dry_run: bool
    portfolio_value: Money
    value_after: Money | None
    orders_planned: int
    orders_executed: int
    orders_failed: int
    total_value_traded: Money
    orders: list[Any]
    errors: list[Any]
    triggered_by: str
    duration: int | None = Field(description="milliseconds")
    status: str
    decision: str | None
    reason: str
    drift: list[Any]
    left_out: list[Any]
    fees: Money
    quote_currency: str
    exchange_id: str


class OrderOut(CamelModel):
    """An order as the ledger recorded it: its latest state, and why it failed if it did."""

    client_order_id: str
    run_id: UUID
    portfolio_id: UUID
    leg: int
    created_at: datetime
    updated_at: datetime
    exchange_id: str
    symbol: str
    side: str
    order_type: str
    amount: Money
    status: str = Field(description=" | ".join(get_args(OrderStatus)))
    filled: Money
    average_price: Money | None
    cost: Money
    fee: Money
    fee_currency: str | None
    fee_known: bool
    exchange_order_id: str | None
    dry_run: bool
    error: dict[str, Any] | None = Field(description="stage, code, message and leg of a failed or rejected order")


class TradeOut(CamelModel):
    id: int
    run_id: UUID
    portfolio_id: UUID
    executed_at: datetime
    exchange_id: str
    symbol: str
    asset: str
    quote: str
    side: str
    quantity: Money
    price: Money
    value: Money
    fee: Money
    fee_currency: str | None
    fee_known: bool = True  # false: the exchange did not report this fill's fee
    exchange_order_id: str | None
    client_order_id: str
    dry_run: bool


class SnapshotOut(CamelModel):
    id: int
    run_id: UUID
    portfolio_id: UUID
    kind: str
    holdings: dict[str, Any]
    prices: dict[str, Any]
    total_value: Money
    quote_currency: str
    taken_at: datetime


class ActivityOut(CamelModel):
    id: int
    portfolio_id: UUID | None
    run_id: UUID | None
    event_type: str
    description: str
    details: dict[str, Any]
    created_at: datetime


class Page(CamelModel):
    success: bool = True
    total: int
    limit: int
    offset: int


class RunPage(Page):
    runs: list[RunOut]


class OrderPage(Page):
    orders: list[OrderOut]


class TradePage(Page):
    trades: list[TradeOut]


class SnapshotPage(Page):
    snapshots: list[SnapshotOut]


class ActivityPage(Page):
    activity: list[ActivityOut]


class StatsOut(CamelModel):
    success: bool = True
    runs: int
    successful_runs: int
    failed_runs: int
    success_rate: Money | None = Field(description="percent of finished runs that succeeded")
    total_value_traded: Money
    average_portfolio_value: Money | None
    fees: Money
    trades: int


# ---------------------------------------------------------------- preview
class PreviewOut(CamelModel):
    success: bool = True
    portfolio_id: UUID
    decision: str
    reason: str
    quote_currency: str
    portfolio_value: Money
    drift: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    left_out: list[dict[str, Any]]
    estimated_fees: Money
    turnover: Money
    expected_weights: dict[str, Any]


# ---------------------------------------------------------------- users
class SignUp(InputModel):
    email: Annotated[str, Field(min_length=3, max_length=254)]
    name: Annotated[str, Field(max_length=100)] = ""

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return validation.email(value)


class SignedUp(CamelModel):
    success: bool = True
    user_id: UUID
    email: str
    token: str = Field(description="shown once; store it now")


class MeOut(CamelModel):
    success: bool = True
    user_id: UUID
    email: str
    name: str
    is_admin: bool
    scopes: list[str]
