"""The exchange port: what the pricer and executor need from an exchange.

Implemented by the ccxt adapter (real exchanges, fake servers in tests) and by the paper exchange.
Errors are sorted into the four classes the executor acts on; adapters translate their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from contracts.v1.strategy import OUTCOME_UNKNOWN

Side = Literal["buy", "sell"]
OrderStatus = Literal["open", "closed", "canceled", "rejected"]


@dataclass(frozen=True)
class Balance:
    free: Decimal
    total: Decimal


@dataclass(frozen=True)
class Market:
    symbol: str  # unified "BASE/QUOTE"
    base: str
    quote: str
    min_amount: Decimal | None = None
    min_cost: Decimal | None = None
    amount_step: Decimal | None = None
    price_step: Decimal | None = None
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    active: bool = True


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    side: Side
    amount: Decimal  # base amount
    client_order_id: str
    order_type: Literal["market", "limit"] = "market"
    price: Decimal | None = None  # limit price
    # The plan's price: what a market buy spends per base unit on exchanges that size market buys
    # by what they spend (Coinbase, Gate, Bitget, ...: amount x price).
    reference_price: Decimal | None = None


@dataclass(frozen=True)
class OrderResult:
    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    side: Side
    status: OrderStatus
    amount: Decimal
    filled: Decimal = Decimal("0")
    average_price: Decimal | None = None
    cost: Decimal = Decimal("0")  # in the market's quote
    fee: Decimal = Decimal("0")
    fee_currency: str | None = None
    # False when the exchange did not say what this fill cost (fee then reads 0): history marks
    # it instead of recording a fee of zero as if it were known.
    fee_known: bool = True
    raw: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


class ExchangeError(Exception):
    """Base of the errors an adapter raises. ``code`` is short and machine-readable."""

    code = "exchange_error"


class RetryLater(ExchangeError):
    """Network trouble, rate limit, exchange unavailable: nothing happened, try again later."""

    code = "retry_later"


class OutcomeUnknown(ExchangeError):
    """An order request may or may not have reached the exchange (timeout, dropped response).

    Never resend: look the order up by its client order id.
    """

    code = OUTCOME_UNKNOWN


class LegFailed(ExchangeError):
    """This order was refused (insufficient funds, invalid order, below minimum); others may go on."""

    code = "leg_failed"


class RunFailed(ExchangeError):
    """Nothing on this account can work now (authentication, permission): fail the whole run."""

    code = "run_failed"


class AccountNotSupported(RunFailed):
    """The key opens an account of a kind the rebalancer does not trade (Bitget's unified trading
    account): nothing is sent; its owner connects a key of another account."""

    code = "account_not_supported"


class KeyRefused(RunFailed):
    """The exchange refused the connection's API key (revoked, expired, lacking a permission):
    whoever holds the connection reads it again before its next call, in case its owner has
    replaced the key."""


class ExchangePort(Protocol):
    """One account on one exchange."""

    exchange_id: str
    # True when create_orders sends a batch in one request: the caller then marks the whole batch
    # as possibly sent first. False: it sends one request per order, so the caller marks and sends
    # the orders one at a time (an unsent order is never looked up needlessly).
    places_batches: bool
    # Whether an order is listed (found by its client order id) as soon as it is placed: then a
    # look-up that misses it is final. Otherwise an exchange may take a while to list a new order.
    lists_new_orders_at_once: bool
    # Whether a look-up asks the exchange for the order by its client id (by that id, or a listing
    # filtered by it) or reads every order since the run began, so that a miss means the exchange
    # does not have it. Otherwise the client id is matched in a page of the newest orders, which a
    # busy account's order can be past.
    finds_orders_by_client_id: bool
    # The exchange's own id of the account, once a balance answer has named it (Binance); None
    # where the exchange does not name it.
    account_uid: str | None

    async def load_markets(self) -> dict[str, Market]: ...

    async def fetch_balance(self) -> dict[str, Balance]: ...

    async def fetch_prices(self, symbols: list[str] | None = None) -> dict[str, Decimal]:
        """Last price per unified symbol (all markets when ``symbols`` is None)."""
        ...

    async def create_order(self, request: OrderRequest) -> OrderResult: ...

    async def create_orders(self, requests: Sequence[OrderRequest]) -> list[OrderResult | ExchangeError]:
        """Place orders of this account one after another, as one call where the exchange can.

        Answer ``i`` is order ``i``'s result or the error it met. A ``LegFailed`` does not stop the
        orders after it; after any other error the batch stops (several ``OutcomeUnknown`` in a
        row when a single request carried them). Orders after the last answer were not sent.
        """
        ...

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str, *, placed_after: datetime | None = None
    ) -> OrderResult | None:
        """The order placed with this client order id, or None if the exchange never saw it.
        ``placed_after``: a time (timezone-aware) the order cannot have been placed before (its
        run's start), which bounds the look-up where the exchange lists orders by time (Coinbase,
        Gate, KuCoin)."""
        ...

    async def cancel_order(self, symbol: str, exchange_order_id: str) -> OrderResult: ...

    async def close(self) -> None: ...


# What a batch of orders answers: a result or an error per order, in order (see create_orders).
OrderAnswer = OrderResult | ExchangeError


async def place_in_order(
    create_order: Callable[[OrderRequest], Awaitable[OrderResult]], requests: Sequence[OrderRequest]
) -> list[OrderAnswer]:
    """``create_orders`` for an exchange without a batch endpoint: one order at a time, stopping
    at the first error that is not this leg's own (the orders after it are not sent)."""
    answers: list[OrderAnswer] = []
    for request in requests:
        try:
            answers.append(await create_order(request))
        except LegFailed as error:
            answers.append(error)
        except ExchangeError as error:
            answers.append(error)
            break
    return answers
