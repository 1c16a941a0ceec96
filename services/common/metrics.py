"""Prometheus metrics of the rebalancer: one module-level set on the default registry.

Each service is its own process, so the default registry holds exactly that service's series;
``/metrics`` (see ``health.py``) serves it. Values arrive as ``Decimal`` and become floats only
here, at the reporting boundary: metrics are for watching, never for accounting.

Label values that come from code (results, triggers, sides, statuses, outcomes) are folded into
fixed vocabularies, so a typo or a new status cannot explode the number of series; unknown values
are reported as ``"other"`` rather than raising, because a metric must never fail a trade.

Cardinality: ``portfolio_id`` labels give one series per portfolio (and one per portfolio and
asset for drift). A process keeps them for its ``PORTFOLIO_METRICS_MAX`` most recently valued
portfolios (default 1,000; 0 turns them off) and drops the least recently valued beyond that, so
memory and scrape size stay bounded however many portfolios there are; the ledger's history has
every valuation. They are built at scrape time from each portfolio's last valuation
(``PortfolioSeries``), so valuing a portfolio costs one dictionary entry.

Several replicas: gauges computed from the database (backlog, active runs, outbox) report the same
value from every replica, so dashboards and alerts aggregate them with ``max``. Per-portfolio gauges
are set by whichever pricer replica valued the portfolio last; ``rebalancer_portfolio_valued_
timestamp_seconds`` lets a query keep only the freshest replica's series.
"""

from __future__ import annotations

import gc
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import metadata

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily

OTHER = "other"

RUN_RESULTS = frozenset({"succeeded", "partial", "failed", "skipped"})
RUN_TRIGGERS = frozenset({"scheduler", "manual", "threshold", "api"})
ORDER_SIDES = frozenset({"buy", "sell"})
ORDER_STATUSES = frozenset(
    {"submitted", "filled", "partially_filled", "rejected", "failed", "canceled", "abandoned"}
)
MESSAGE_OUTCOMES = frozenset({"processed", "duplicate", "retried", "dead_lettered", "ignored"})

# Runs take seconds to minutes (limit orders wait up to their timeout).
RUN_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
EXCHANGE_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

BUILD_INFO = Info("rebalancer_build", "Service name and version of this process")

RUNS = Counter("rebalancer_runs", "Rebalance runs finished, by result and trigger", ["result", "trigger"])
RUN_DURATION = Histogram(
    "rebalancer_run_duration_seconds",
    "Wall time from a run's start to its completion",
    ["result"],
    buckets=RUN_DURATION_BUCKETS,
)
ORDERS = Counter("rebalancer_orders", "Order events, by side and status", ["side", "status"])
GC_SECONDS = Counter(
    "rebalancer_gc_seconds", "Time the garbage collector held the process, by generation", ["generation"]
)
VALUE_TRADED = Counter("rebalancer_value_traded", "Value traded by finished runs, in the quote currency", ["quote"])
FEES = Counter("rebalancer_fees", "Fees paid by finished runs, in the quote currency", ["quote"])

DUE_BACKLOG = Gauge("rebalancer_due_backlog", "Portfolios due for a rebalance and not yet claimed")
ACTIVE_RUNS = Gauge("rebalancer_active_runs", "Runs claimed and not yet completed")
WAITING_FOR_ACCOUNT = Gauge(
    "rebalancer_due_waiting_for_account",
    "Live portfolios due and waiting for another live run on their exchange account to end",
)
OLDEST_ACTIVE_RUN_AGE = Gauge(
    "rebalancer_oldest_active_run_age_seconds", "Age of the oldest run still active (0 when none)"
)

EXCHANGE_CALL = Histogram(
    "rebalancer_exchange_call_seconds",
    "Latency of exchange calls, errors included",
    ["exchange", "call"],
    buckets=EXCHANGE_CALL_BUCKETS,
)
EXCHANGE_ERRORS = Counter(
    "rebalancer_exchange_errors",
    "Failed exchange calls, by exception class",
    ["exchange", "call", "error_class"],
)

DEAD_LETTERS = Counter("rebalancer_dead_letters", "Messages set aside as dead letters", ["consumer", "reason"])
MESSAGES_PROCESSED = Counter(
    "rebalancer_messages_processed", "Bus messages handled, by consumer and outcome", ["consumer", "outcome"]
)
# The bus's back-off: 0.5 s doubling to 30 s (a run's plan: by its tries that got no further).
RETRY_WAIT_BUCKETS = (0.5, 1, 2, 4, 8, 16, 30)
RETRY_WAIT = Histogram(
    "rebalancer_retry_wait_seconds",
    "Waits chosen before a message that failed for a passing reason is delivered again, by consumer",
    ["consumer"],
    buckets=RETRY_WAIT_BUCKETS,
)
ORDERS_UNRESOLVED = Gauge(
    "rebalancer_orders_unresolved",
    "Orders whose request may have reached the exchange and whose outcome is not recorded yet"
    " (in flight, or looked up by the reconciler)",
)
OLDEST_UNRESOLVED_ORDER_AGE = Gauge(
    "rebalancer_oldest_unresolved_order_age_seconds",
    "Time since the oldest order of unknown outcome was sent (0 when none)",
)
OUTBOX_PENDING = Gauge("rebalancer_outbox_pending", "Outbox rows not yet published")
OUTBOX_LAG = Gauge("rebalancer_outbox_lag_seconds", "Age of the oldest unpublished outbox row (0 when none)")


@dataclass(frozen=True)
class PortfolioValuation:
    quote: str
    total_value: float
    drift_pp_by_asset: Mapping[str, float]
    valued_at: float  # unix time


class PortfolioSeries:
    """The per-portfolio gauges, built at scrape time from each portfolio's last valuation.

    A valuation is one dictionary entry, not a ``Gauge.labels(...)`` call per asset (which cost
    the planner 15 % of its CPU); a portfolio's series are replaced as a whole, so an asset that
    left it or a quote that changed leaves no stale series behind.
    """

    # (name, documentation, labels): the families this collector exposes.
    FAMILIES = (
        ("rebalancer_portfolio_value", "Last valuation of a portfolio", ("portfolio_id", "quote")),
        (
            "rebalancer_asset_drift_pp",
            "Current weight minus target weight, in percentage points",
            ("portfolio_id", "asset"),
        ),
        (
            "rebalancer_portfolio_valued_timestamp_seconds",
            "Unix time of the valuation behind the portfolio gauges",
            ("portfolio_id",),
        ),
    )

    def __init__(self, max_portfolios: int = 1000) -> None:
        # Least recently valued first.
        self.latest: OrderedDict[str, PortfolioValuation] = OrderedDict()
        self.max_portfolios = max_portfolios

    def record(self, portfolio_id: str, valuation: PortfolioValuation) -> None:
        if self.max_portfolios == 0:
            return
        self.latest.pop(portfolio_id, None)
        self.latest[portfolio_id] = valuation
        self.drop_least_recently_valued()

    def drop_least_recently_valued(self) -> None:
        while len(self.latest) > self.max_portfolios:
            self.latest.popitem(last=False)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        value, drift, valued_at = (GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in self.FAMILIES)
        for portfolio_id, v in list(self.latest.items()):
            value.add_metric([portfolio_id, v.quote], v.total_value)
            for asset, pp in v.drift_pp_by_asset.items():
                drift.add_metric([portfolio_id, asset], pp)
            valued_at.add_metric([portfolio_id], v.valued_at)
        yield from (value, drift, valued_at)


PORTFOLIO_SERIES = PortfolioSeries()
REGISTRY.register(PORTFOLIO_SERIES)


def limit_portfolio_series(max_portfolios: int) -> None:
    """Keep per-portfolio series for at most ``max_portfolios`` portfolios (0: none)."""
    PORTFOLIO_SERIES.max_portfolios = max(0, max_portfolios)
    PORTFOLIO_SERIES.drop_least_recently_valued()


def bounded(value: str, allowed: frozenset[str]) -> str:
    """The label value itself when it belongs to ``allowed``, else ``"other"``."""
    return value if value in allowed else OTHER


def set_build_info(service: str, version: str | None = None) -> None:
    """Publish ``rebalancer_build_info{service, version}``; version defaults to the installed one."""
    if version is None:
        try:
            version = metadata.version("rebalancer")
        except metadata.PackageNotFoundError:
            version = "unknown"
    BUILD_INFO.info({"service": service, "version": version})


def observe_run(
    result: str,
    trigger: str,
    duration_seconds: float,
    value_traded: Decimal,
    fees: Decimal,
    quote: str,
) -> None:
    """Record one finished run (call once per ``RebalanceCompleted``)."""
    result_label = bounded(result, RUN_RESULTS)
    RUNS.labels(result=result_label, trigger=bounded(trigger, RUN_TRIGGERS)).inc()
    RUN_DURATION.labels(result=result_label).observe(max(duration_seconds, 0.0))
    # Counters only go up: a negative figure would be a bug upstream, not a refund.
    if value_traded > 0:
        VALUE_TRADED.labels(quote=quote).inc(float(value_traded))
    if fees > 0:
        FEES.labels(quote=quote).inc(float(fees))


def observe_order(side: str, status: str) -> None:
    ORDERS.labels(side=bounded(side, ORDER_SIDES), status=bounded(status, ORDER_STATUSES)).inc()


def record_portfolio_valuation(
    portfolio_id: str,
    quote: str,
    total_value: Decimal,
    drift_pp_by_asset: Mapping[str, Decimal],
    valued_at: datetime,
) -> None:
    """Set a portfolio's value and per-asset drift; assets no longer reported lose their series."""
    PORTFOLIO_SERIES.record(
        portfolio_id,
        PortfolioValuation(
            quote,
            float(total_value),
            {asset: float(drift) for asset, drift in drift_pp_by_asset.items()},
            valued_at.timestamp(),
        ),
    )


def forget_portfolio(portfolio_id: str) -> None:
    """Drop every series of a portfolio (deleted, disabled, or least recently valued)."""
    PORTFOLIO_SERIES.latest.pop(portfolio_id, None)


def set_schedule_state(
    due_backlog: int, active_runs: int, oldest_active_run_age_seconds: float, waiting_for_account: int = 0
) -> None:
    DUE_BACKLOG.set(due_backlog)
    WAITING_FOR_ACCOUNT.set(waiting_for_account)
    ACTIVE_RUNS.set(active_runs)
    OLDEST_ACTIVE_RUN_AGE.set(max(oldest_active_run_age_seconds, 0.0))


def set_outbox_state(pending: int, oldest_age_seconds: float) -> None:
    OUTBOX_PENDING.set(pending)
    OUTBOX_LAG.set(max(oldest_age_seconds, 0.0) if pending else 0.0)


def set_unresolved_orders(count: int, oldest_age_seconds: float) -> None:
    ORDERS_UNRESOLVED.set(count)
    OLDEST_UNRESOLVED_ORDER_AGE.set(max(oldest_age_seconds, 0.0) if count else 0.0)


def record_message(consumer: str, outcome: str) -> None:
    MESSAGES_PROCESSED.labels(consumer=consumer, outcome=bounded(outcome, MESSAGE_OUTCOMES)).inc()


def record_retry_wait(consumer: str, seconds: float, messages: int = 1) -> None:
    for _ in range(messages):
        RETRY_WAIT.labels(consumer=consumer).observe(seconds)


def record_dead_letter(consumer: str, reason: str) -> None:
    """``reason`` should be a short class of failure (an exception class name), not a message text."""
    DEAD_LETTERS.labels(consumer=consumer, reason=reason).inc()
    record_message(consumer, "dead_lettered")


def error_class(exc: BaseException) -> str:
    """The label for an exception: its class name (ccxt's hierarchy names the cause well)."""
    return type(exc).__name__


@contextmanager
def time_exchange_call(exchange: str, call: str) -> Iterator[None]:
    """Time one exchange call; a failure is counted by class and re-raised unchanged.

    Works around ``await`` too: ``with time_exchange_call("kraken", "create_order"): await ...``.
    """
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        EXCHANGE_ERRORS.labels(exchange=exchange, call=call, error_class=error_class(exc)).inc()
        raise
    finally:
        EXCHANGE_CALL.labels(exchange=exchange, call=call).observe(time.perf_counter() - started)


def exposed_names(registry: CollectorRegistry = REGISTRY) -> frozenset[str]:
    """Every sample name a registry can expose, e.g. ``rebalancer_runs_total`` and the
    ``_bucket/_sum/_count`` series of histograms; dashboards and alerts may reference only these."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(sample.name for sample in family.samples)
        # A family with no sample yet (labelled, never used) exposes these once it has one.
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"),
            "info": ("_info",),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return frozenset(names)


class _CollectionTimer:
    """A ``gc.callbacks`` entry adding each collection's duration to ``GC_SECONDS``: what
    ``GC_THRESHOLD`` is tuned by (about a microsecond per collection)."""

    def __init__(self) -> None:
        self._started = 0.0
        self._by_generation = [GC_SECONDS.labels(generation=str(g)) for g in range(3)]

    def __call__(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].inc(time.perf_counter() - self._started)


_COLLECTION_TIMER = _CollectionTimer()


def time_garbage_collections() -> None:
    """Report the garbage collector's time in ``rebalancer_gc_seconds_total`` (once per process)."""
    if _COLLECTION_TIMER not in gc.callbacks:
        gc.callbacks.append(_COLLECTION_TIMER)
