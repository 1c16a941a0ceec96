"""Configuration of the paper exchange: latency, rate limit and injected faults.

Faults are numbered by ``create_order`` call (1-based) and counted by a :class:`FaultCounter`.
Every config shares the process-wide counter unless given its own, so ``PAPER_FAULTS=drop_response=1``
means "the first order this process places", whichever ``PaperExchange`` instance places it.

Environment (read by :meth:`PaperConfig.from_env`):

- ``PAPER_LATENCY_MS``: delay before each call answers, in milliseconds (default 0).
- ``PAPER_RATE_LIMIT``: calls per second per account (default unlimited); excess calls wait.
- ``PAPER_FAULTS``: comma-separated ``kind=WHEN`` items, where WHEN is a call number ``N``, several
  numbers ``N|M|...``, or ``every:N`` (every Nth call). Kinds (see :class:`FaultKind`):

  - ``drop_response``: the order executes and commits, then the call raises ``OutcomeUnknown``;
  - ``timeout``: the call raises ``OutcomeUnknown`` and nothing executes;
  - ``unavailable``: the call raises ``RetryLater`` and nothing executes;
  - ``reject_insufficient``: the call raises ``LegFailed`` (insufficient funds), nothing executes;
  - ``auth``: the call raises ``RunFailed`` (authentication), nothing executes.

  Example: ``PAPER_FAULTS="drop_response=1,timeout=3|5,unavailable=every:10"``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    DROP_RESPONSE = "drop_response"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    REJECT_INSUFFICIENT = "reject_insufficient"
    AUTH = "auth"


@dataclass(frozen=True)
class Fault:
    """Fire ``kind`` on the listed create_order calls, or on every ``every``-th one."""

    kind: FaultKind
    calls: frozenset[int] = frozenset()
    every: int | None = None

    def fires_on(self, call_number: int) -> bool:
        if call_number in self.calls:
            return True
        return self.every is not None and call_number % self.every == 0


class FaultCounter:
    """Numbers create_order calls; thread-safe so one counter can serve a whole process."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def next_call(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    @property
    def calls(self) -> int:
        return self._count


PROCESS_FAULT_COUNTER = FaultCounter()


@dataclass(frozen=True)
class PaperConfig:
    latency_seconds: float = 0.0
    rate_limit_per_second: float | None = None
    faults: tuple[Fault, ...] = ()
    fault_counter: FaultCounter = field(default=PROCESS_FAULT_COUNTER, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must be >= 0")
        if self.rate_limit_per_second is not None and self.rate_limit_per_second <= 0:
            raise ValueError("rate_limit_per_second must be > 0 (or None for unlimited)")

    def fault_for(self, call_number: int) -> FaultKind | None:
        """The first configured fault that fires on this create_order call, if any."""
        for fault in self.faults:
            if fault.fires_on(call_number):
                return fault.kind
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PaperConfig:
        env = os.environ if environ is None else environ
        latency_ms = _parse_number(env.get("PAPER_LATENCY_MS", ""), "PAPER_LATENCY_MS")
        rate = _parse_number(env.get("PAPER_RATE_LIMIT", ""), "PAPER_RATE_LIMIT")
        return cls(
            latency_seconds=(latency_ms or 0.0) / 1000.0,
            rate_limit_per_second=rate or None,
            faults=parse_faults(env.get("PAPER_FAULTS", "")),
        )


def _parse_number(text: str, name: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {text!r}")
    return value


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse ``PAPER_FAULTS`` (see the module docstring); raises ValueError on a bad item."""
    faults: list[Fault] = []
    for raw_item in spec.split(","):
        item = raw_item.strip()
        if not item:
            continue
        kind_text, sep, when = item.partition("=")
        if not sep:
            raise ValueError(f"PAPER_FAULTS item {item!r} is not kind=WHEN")
        try:
            kind = FaultKind(kind_text.strip())
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown paper fault {kind_text.strip()!r} (known: {known})") from None
        faults.append(_parse_when(kind, when.strip(), item))
    return tuple(faults)


def _parse_when(kind: FaultKind, when: str, item: str) -> Fault:
    try:
        if when.startswith("every:"):
            every = int(when.removeprefix("every:"))
            if every < 1:
                raise ValueError
            return Fault(kind, every=every)
        calls = frozenset(int(part) for part in when.split("|"))
        if not calls or min(calls) < 1:
            raise ValueError
        return Fault(kind, calls=calls)
    except ValueError:
        raise ValueError(
            f"PAPER_FAULTS item {item!r}: expected a call number N >= 1, N|M|..., or every:N"
        ) from None
