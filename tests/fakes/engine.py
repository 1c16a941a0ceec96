"""The trading state a fake exchange keeps: balances, prices, orders and their fills. Dialect-free.

Market orders (and marketable limit orders) fill at the current price at once, times the
configured fill ratio; fees are charged in the quote currency, or, where the exchange does so
(``fee_in_received``), in the currency an order receives (a buy's in the base, taken from what it
buys); balances move with every fill.
Each fill is kept as a trade (id, price, quantity, fee), as exchanges list them in trade history.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from decimal import Decimal


class EngineError(Exception):
    """A refusal; ``kind`` is dialect-free ("insufficient_funds", "invalid_order", "unknown_order")."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FakeFill:
    """One trade of an order: what a trade-history endpoint reports."""

    id: int
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    time: float

    @property
    def cost(self) -> Decimal:
        return self.price * self.quantity


@dataclass
class FakeOrder:
    id: str
    client_order_id: str | None
    symbol: str  # unified BASE/QUOTE
    side: str
    order_type: str
    amount: Decimal
    price: Decimal | None  # limit price
    status: str = "open"  # open|closed|canceled
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    created_at: float = field(default_factory=time.time)
    closed_at: float | None = None
    fills: list[FakeFill] = field(default_factory=list)
    # Its fee in the base (True) or the quote (False), where the order chose (Kraken's oflags);
    # None: as the exchange charges (ExchangeState.fee_in_received).
    fee_in_base: bool | None = None

    @property
    def average(self) -> Decimal | None:
        return self.cost / self.filled if self.filled else None

    @property
    def fee_currency(self) -> str | None:
        """The currency its fee was charged in (None while nothing filled)."""
        return self.fills[0].fee_currency if self.fills else None


@dataclass
class FakeMarket:
    base: str
    quote: str
    min_amount: Decimal = Decimal("0.0001")
    amount_step: Decimal = Decimal("0.00000001")
    price_step: Decimal = Decimal("0.01")
    min_cost: Decimal = Decimal("5")

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}"


@dataclass
class ExchangeState:
    markets: dict[str, FakeMarket]
    prices: dict[str, Decimal]
    balances: dict[str, Decimal]
    fee_rate: Decimal = Decimal("0.001")
    fill_ratio: Decimal = Decimal(1)
    force_insufficient_funds: bool = False
    # False: look-ups no longer find orders that are not open (exchanges list closed orders for a while).
    closed_listed: bool = True
    # Seconds after it is placed before look-ups by client order id find an order (an exchange's
    # order index may lag its matching engine).
    listing_delay: float = 0.0
    # True: a market order's unfilled rest is canceled at once (OKX's and Bybit's spot market
    # orders are immediate-or-cancel); False: it rests on the book, as a limit order would.
    market_ioc: bool = False
    # True: a fee is charged in the currency the order receives, so a buy's fee is in the base and
    # comes out of what it buys (Binance, OKX, Bybit, Gate, Bitget); False: always in the quote.
    fee_in_received: bool = False
    orders: list[FakeOrder] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _trade_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    def locked(self, asset: str) -> Decimal:
        """What open orders hold back."""
        held = Decimal(0)
        for order in self.orders:
            if order.status != "open":
                continue
            market = self.markets[order.symbol]
            remaining = order.amount - order.filled
            if order.side == "sell" and market.base == asset:
                held += remaining
            if order.side == "buy" and market.quote == asset:
                held += remaining * (order.price or self.prices[order.symbol]) * (1 + self.fee_rate)
        return held

    def free(self, asset: str) -> Decimal:
        return self.balances.get(asset, Decimal(0)) - self.locked(asset)

    def place(
        self,
        symbol: str,
        side: str,
        order_type: str,
        amount: Decimal,
        price: Decimal | None,
        client_order_id: str | None,
        order_id: str,
        fee_in_base: bool | None = None,
    ) -> FakeOrder:
        """``fee_in_base``: the order's own choice of fee currency (FakeOrder.fee_in_base); a sell
        whose fee is taken in the base needs the fee on top of what it sells."""
        market = self.markets.get(symbol)
        if market is None:
            raise EngineError("unknown_symbol", f"unknown market {symbol}")
        if amount <= 0 or amount < market.min_amount:
            raise EngineError("invalid_order", f"amount {amount} below minimum {market.min_amount}")
        if client_order_id and any(
            o.client_order_id == client_order_id and o.status == "open" for o in self.orders
        ):
            raise EngineError("duplicate_order", f"duplicate open client order id {client_order_id}")
        reference = price if order_type == "limit" and price is not None else self.prices[symbol]
        needed_asset = market.quote if side == "buy" else market.base
        needed = amount * reference * (1 + self.fee_rate) if side == "buy" else amount
        if side == "sell" and fee_in_base:
            needed = amount * (1 + self.fee_rate)
        if self.force_insufficient_funds or self.free(needed_asset) < needed:
            raise EngineError("insufficient_funds", f"insufficient {needed_asset}")
        order = FakeOrder(order_id, client_order_id, symbol, side, order_type, amount, price, fee_in_base=fee_in_base)
        self.orders.append(order)
        marketable = order_type == "market" or (
            price is not None
            and (price >= self.prices[symbol] if side == "buy" else price <= self.prices[symbol])
        )
        if marketable:
            self._fill(order, market, (amount * self.fill_ratio).quantize(market.amount_step))
        if order_type == "market" and self.market_ioc and order.status == "open":
            order.status = "canceled"
            order.closed_at = time.time()
        return order

    def _fill(self, order: FakeOrder, market: FakeMarket, quantity: Decimal) -> None:
        if quantity <= 0:
            return
        price = self.prices[order.symbol]
        cost = quantity * price
        buying = order.side == "buy"
        in_base = order.fee_in_base if order.fee_in_base is not None else buying and self.fee_in_received
        if in_base:
            fee, fee_currency = quantity * self.fee_rate, market.base
            base_change, quote_change = (quantity - fee, -cost) if buying else (-quantity - fee, cost)
        else:
            fee, fee_currency = cost * self.fee_rate, market.quote
            base_change, quote_change = (quantity, -cost - fee) if buying else (-quantity, cost - fee)
        self.balances[market.base] = self.balances.get(market.base, Decimal(0)) + base_change
        self.balances[market.quote] = self.balances.get(market.quote, Decimal(0)) + quote_change
        order.filled += quantity
        order.cost += cost
        order.fee += fee
        order.fills.append(FakeFill(next(self._trade_ids), price, quantity, fee, fee_currency, time.time()))
        if order.filled >= order.amount:
            order.status = "closed"
            order.closed_at = time.time()

    def fill_more(self, order: FakeOrder, quantity: Decimal) -> None:
        """Another trade on a resting order, at the current price (a later match on the book)."""
        if order.status != "open" or quantity > order.amount - order.filled:
            raise EngineError("invalid_order", f"cannot fill {quantity} more of order {order.id}")
        self._fill(order, self.markets[order.symbol], quantity)

    def cancel(self, order_id: str | None = None, client_order_id: str | None = None) -> FakeOrder:
        order = self.find(order_id, client_order_id)
        if order is None or order.status != "open":
            raise EngineError("unknown_order", "unknown order")
        order.status = "canceled"
        order.closed_at = time.time()
        return order

    def listed(self, order: FakeOrder) -> bool:
        return time.time() - order.created_at >= self.listing_delay

    def find(self, order_id: str | None = None, client_order_id: str | None = None) -> FakeOrder | None:
        for order in reversed(self.orders):
            if order_id is not None and order.id == order_id:
                return order
            if client_order_id is not None and order.client_order_id == client_order_id:
                return order
        return None

    def next_number(self) -> int:
        return next(self._ids)


def default_state(quote: str = "USD", fee_rate: Decimal = Decimal("0.001")) -> ExchangeState:
    markets = {m.symbol: m for m in (FakeMarket(base, quote) for base in ("BTC", "ETH", "SOL"))}
    return ExchangeState(
        markets=markets,
        prices={
            f"BTC/{quote}": Decimal("60000"),
            f"ETH/{quote}": Decimal("3000"),
            f"SOL/{quote}": Decimal("150"),
        },
        balances={"BTC": Decimal("0.5"), "ETH": Decimal("4"), quote: Decimal("10000")},
        fee_rate=fee_rate,
    )
