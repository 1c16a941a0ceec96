"""Pure arithmetic of the pipeline benchmark: percentiles, exchange-bound lower bounds, the
seed's sequential baseline, and the printed table. No I/O here."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def counted_since(now: C, before: C | None, *, keep: Sequence[str] = ()) -> C:
    """A dataclass of cumulative counters minus an earlier snapshot of it, field by field; the
    fields in ``keep`` (names, sizes) are taken as they are now. No snapshot: ``now`` itself."""
    if before is None:
        return now
    changes: dict[str, Any] = {f.name: getattr(now, f.name) - getattr(before, f.name)
                               for f in dataclasses.fields(now)
                               if f.name not in keep}
    return dataclasses.replace(now, **changes)


def sequential_calls_seconds(calls: int, latency_s: float, rate_per_second: float | None) -> float:
    """Least time for ``calls`` exchange calls made one after another on one account: each waits
    for its answer (latency) and for its rate-limit slot (1/rate after the previous one)."""
    if calls <= 0:
        return 0.0
    spacing = max(latency_s, 1.0 / rate_per_second if rate_per_second else 0.0)
    return (calls - 1) * spacing + latency_s


@dataclass(frozen=True)
class ExchangeBound:
    """Lower bounds of an exchange-bound run, from the slowest account's calls."""

    orders_only_s: float  # the account's orders at its rate limit, plus one latency
    all_calls_s: float  # every call on the run's critical path (balance reads included)


def exchange_lower_bound(
    orders: int, latency_s: float, rate_per_second: float | None, *, pricer_calls: int = 1, executor_reads: int = 1
) -> ExchangeBound:
    """``orders`` is the slowest account's order count. The pricer's balance read happens in
    another process (its own limiter) before the executor starts, so it adds its latency; the
    executor's reads share the account's limiter with its orders."""
    orders_only = sequential_calls_seconds(orders, latency_s, rate_per_second)
    executor = sequential_calls_seconds(orders + executor_reads, latency_s, rate_per_second)
    pricer = sequential_calls_seconds(pricer_calls, latency_s, rate_per_second)
    return ExchangeBound(orders_only_s=orders_only, all_calls_s=executor + pricer)


def seed_baseline_seconds(portfolios: int, orders_per_portfolio: float, work_per_portfolio_s: float,
                          pause_between_orders_s: float = 1.0) -> float:
    """The seed's way: one portfolio at a time, ``pause`` between consecutive orders, plus the
    measured work of one portfolio (valuation, planning, orders, history)."""
    pauses = max(orders_per_portfolio - 1, 0) * pause_between_orders_s
    return portfolios * (work_per_portfolio_s + pauses)


@dataclass(frozen=True)
class ProcessUsage:
    name: str
    cpu_seconds: float
    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float


def usage_table(usages: Sequence[ProcessUsage], portfolios: int) -> list[str]:
    head = f"{'process':<22}{'CPU s':>9}{'CPU ms/portfolio':>18}{'RSS start MB':>14}{'peak MB':>10}{'end MB':>9}"
    lines = [head, "-" * len(head)]
    for u in usages:
        per = u.cpu_seconds * 1000 / portfolios if portfolios else math.nan
        lines.append(
            f"{u.name:<22}{u.cpu_seconds:>9.2f}{per:>18.2f}{u.rss_start_mb:>14.1f}{u.rss_peak_mb:>10.1f}"
            f"{u.rss_end_mb:>9.1f}"
        )
    return lines


def key_values(pairs: Sequence[tuple[str, str]]) -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0)
    return [f"{k:<{width}}  {v}" for k, v in pairs]


def cpu_ceiling(usages: Sequence[ProcessUsage], portfolios: int, cores: int) -> tuple[float, str, float]:
    """Portfolios/s this machine could sustain on the measured CPU alone, were it not shared:
    (all pipeline processes over all cores, the busiest process, its own ceiling at one core).
    Excludes the benchmark itself and other processes."""
    pipeline = [u for u in usages if not u.name.startswith(("bench", "("))]
    total = sum(u.cpu_seconds for u in pipeline)
    busiest = max(pipeline, key=lambda u: u.cpu_seconds)
    whole = portfolios * cores / total if total > 0 else math.inf
    single = portfolios / busiest.cpu_seconds if busiest.cpu_seconds > 0 else math.inf
    return whole, busiest.name, single
