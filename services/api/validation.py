"""Pure validation of what users send: weights, symbols, thresholds, schedules, currencies.

Each check returns the cleaned value or raises ``ValueError`` with a message meant for the user;
the request models turn those into 422 answers that name the field. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# Exchange tickers: letters and digits, optionally one inner separator (1INCH, USDC, BTC-PERP
# are written without separators by ccxt for spot; allow '.' and '-' inside for exotic ones).
_SYMBOL = re.compile(r"^[A-Z0-9](?:[A-Z0-9.\-]{0,14}[A-Z0-9])?$")
_PAPER_ACCOUNT = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{2,63}$")

NAMED_INTERVALS: tuple[str, ...] = ("hourly", "daily", "weekly", "monthly", "threshold")
Interval = Literal["hourly", "daily", "weekly", "monthly", "threshold", "cron"]

WEIGHT_SUM = Decimal("100")
# Weights a user types (33.33 x 3) rarely sum to exactly 100: accept this much and normalize.
WEIGHT_SUM_TOLERANCE = Decimal("0.1")
WEIGHT_PLACES = Decimal("0.00000001")
MAX_ASSETS = 50
MAX_MONEY = Decimal("1e15")


def symbol(raw: str) -> str:
    """An asset or currency symbol, upper-cased: ``"btc"`` -> ``"BTC"``."""
    cleaned = raw.strip().upper()
    if not _SYMBOL.match(cleaned):
        raise ValueError(
            f"{raw!r} is not a valid asset symbol (1-16 letters or digits, like BTC or USDC)"
        )
    return cleaned


def finite(value: Decimal, what: str) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite number")
    if abs(value) > MAX_MONEY:
        raise ValueError(f"{what} is too large")
    return value


def to_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what} must be a number") from None
    return finite(number, what)


def target_weights(raw: Mapping[str, object]) -> dict[str, Decimal]:
    """Positive weights over distinct well-formed symbols summing to 100 (within the tolerance),
    normalized to sum to exactly 100."""
    if not raw:
        raise ValueError("give at least one asset weight")
    if len(raw) > MAX_ASSETS:
        raise ValueError(f"at most {MAX_ASSETS} assets")
    weights: dict[str, Decimal] = {}
    problems: list[str] = []
    for key, value in raw.items():
        try:
            asset = symbol(key)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if asset in weights:
            problems.append(f"{asset} is given more than once")
            continue
        try:
            weight = to_decimal(value, f"the weight of {asset}")
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if weight <= 0:
            problems.append(f"the weight of {asset} must be positive")
            continue
        weights[asset] = weight
    if problems:
        raise ValueError("; ".join(problems))
    total = sum(weights.values(), Decimal(0))
    if abs(total - WEIGHT_SUM) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"weights must sum to 100 (they sum to {total.normalize():f})")
    return normalize_weights(weights)


def normalize_weights(weights: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Scale to a sum of exactly 100 at 8 places; the rounding remainder goes to the largest weight."""
    total = sum(weights.values(), Decimal(0))
    scaled = {a: (w * WEIGHT_SUM / total).quantize(WEIGHT_PLACES) for a, w in weights.items()}
    remainder = WEIGHT_SUM - sum(scaled.values(), Decimal(0))
    if remainder:
        largest = max(scaled, key=lambda a: (scaled[a], a))
        scaled[largest] += remainder
    return {a: w.normalize() if w == w.to_integral() else w for a, w in scaled.items()}


def distinct_symbols(raw: Iterable[str], what: str) -> list[str]:
    seen: list[str] = []
    for item in raw:
        cleaned = symbol(item)
        if cleaned in seen:
            raise ValueError(f"{cleaned} is listed more than once in {what}")
        seen.append(cleaned)
    return seen


def threshold(value: Decimal, kind: str) -> Decimal:
    """absolute: percentage points, relative: percent of each target weight, value: quote currency."""
    finite(value, "the threshold")
    if kind in ("absolute", "relative"):
        if not Decimal(0) < value <= Decimal(100):
            raise ValueError(f"a {kind} threshold must be above 0 and at most 100")
    elif value <= 0:
        raise ValueError("a value threshold must be above 0")
    return value


def is_cron(expression: str) -> bool:
    parts = expression.split()
    return len(parts) in (5, 6) and bool(croniter.is_valid(expression))


def cron_expression(raw: str) -> str:
    cleaned = " ".join(raw.split())
    if not is_cron(cleaned):
        raise ValueError(f"{raw!r} is not a valid cron expression (5 fields, like '0 * * * *')")
    return cleaned


def interval(raw: str) -> tuple[Interval, str | None]:
    """``(interval, cron)``: a named interval, ``"cron"`` (its expression given apart), or a cron
    expression written in place of the interval."""
    cleaned = raw.strip().lower()
    if cleaned in NAMED_INTERVALS:
        return cleaned, None  # type: ignore[return-value]
    if cleaned == "cron":
        return "cron", None
    if is_cron(raw.strip()):
        return "cron", cron_expression(raw)
    raise ValueError(
        f"{raw!r} is not a valid interval: use one of {', '.join(NAMED_INTERVALS)}, or a cron expression"
    )


def timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{raw!r} is not a known time zone (like UTC or Europe/Berlin)") from None
    return raw


def paper_account(raw: str) -> str:
    if not _PAPER_ACCOUNT.match(raw):
        raise ValueError("a paper account name is 1-64 letters, digits, '_' or '-'")
    return raw


def email(raw: str) -> str:
    cleaned = raw.strip()
    if not _EMAIL.match(cleaned):
        raise ValueError(f"{raw!r} is not a valid email address")
    return cleaned


def check_interval(raw: str) -> str:
    """The scheduler's check interval: a cron expression or a number of seconds (1-86400)."""
    cleaned = raw.strip()
    if cleaned.isdigit():
        if not 1 <= int(cleaned) <= 86_400:
            raise ValueError("a check interval in seconds must be between 1 and 86400")
        return cleaned
    return cron_expression(cleaned)


def api_url(raw: str) -> str:
    cleaned = raw.strip().rstrip("/")
    if not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", cleaned):
        raise ValueError("the API URL must be an http(s) URL")
    return cleaned


def schedule_problems(
    *,
    interval_name: str,
    cron: str | None,
    target_assets: Iterable[str],
    leave_alone: Iterable[str],
    quote_currency: str,
) -> list[tuple[str, str]]:
    """Cross-field rules, as (field, message) pairs; empty when the portfolio is consistent."""
    problems: list[tuple[str, str]] = []
    if interval_name == "cron" and not cron:
        problems.append(("cron", "a cron interval needs a cron expression"))
    targets = set(target_assets)
    overlap = sorted(targets & set(leave_alone))
    if overlap:
        problems.append(("leaveAlone", f"{', '.join(overlap)} cannot be both targeted and left alone"))
    if quote_currency in set(leave_alone):
        problems.append(("leaveAlone", f"the quote currency {quote_currency} cannot be left alone"))
    return problems
