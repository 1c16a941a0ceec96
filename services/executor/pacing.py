"""How long a plan waits before it is tried again after a passing failure (a rate limit, an order
not listed yet): the back-off grows with the tries in a row that got no further, not with every try
the plan has had.

The bus's own back-off counts a message's deliveries. A run's plan is delivered again after each
passing failure of the run, so a rate limit met late in a run that had already waited out an
exchange's slow listing would wait 8-30 s, though this failure is its first: time the run's lease
may not have (a run sends nothing after 90 % of it, and sells left without their buys hold cash
until the next run). Progress is how many legs have an outcome: a try that records more than any
before starts the back-off again.

Kept in memory per executor process: a run this process has not seen fail (tried by another
replica, after a restart, or forgotten past ``MAX_RUNS``) waits as at a first failure, which costs
the exchange one early retry at most.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from services.common.bus import redelivery_delay

# Runs remembered at most: a run forgotten early only waits as the bus would have it wait.
MAX_RUNS = 10_000


@dataclass(frozen=True)
class _Tries:
    reached: int  # the most legs with an outcome any try has recorded
    stalled: int  # tries in a row since that got no further


class RetryPacing:
    def __init__(self, max_runs: int = MAX_RUNS) -> None:
        self._runs: OrderedDict[str, _Tries] = OrderedDict()
        self._max_runs = max_runs

    def after_failed_try(self, run_id: str, reached: int) -> float:
        """The wait before ``run_id`` is tried again, after a try that ended with ``reached`` legs
        having an outcome."""
        before = self._runs.pop(run_id, None)
        if before is None or reached > before.reached:
            tries = _Tries(reached, 1)
        else:
            tries = _Tries(before.reached, before.stalled + 1)
        self._runs[run_id] = tries
        while len(self._runs) > self._max_runs:
            self._runs.popitem(last=False)  # the run tried longest ago
        return redelivery_delay(tries.stalled)

    def finished(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def __len__(self) -> int:
        return len(self._runs)
