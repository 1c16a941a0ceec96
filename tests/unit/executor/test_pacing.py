"""A failed run's retry waits by the tries in a row that got no further, not by every try."""

from __future__ import annotations

from services.common.bus import TransientError, redelivery_delay, retry_delay
from services.executor.pacing import RetryPacing


def test_tries_that_get_no_further_back_off_as_the_bus_would() -> None:
    pacing = RetryPacing()
    waits = [pacing.after_failed_try("run", 0) for _ in range(8)]
    assert waits == [redelivery_delay(n) for n in range(1, 9)]
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and waits[-1] == 30.0


def test_a_try_that_records_more_legs_starts_the_back_off_again() -> None:
    pacing = RetryPacing()
    assert [pacing.after_failed_try("run", 0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert pacing.after_failed_try("run", 1) == 0.5  # the sell went through; a buy met a rate limit
    assert pacing.after_failed_try("run", 1) == 1.0
    assert pacing.after_failed_try("run", 3) == 0.5


def test_a_try_that_records_fewer_legs_than_the_furthest_is_no_progress() -> None:
    pacing = RetryPacing()
    pacing.after_failed_try("run", 2)
    assert pacing.after_failed_try("run", 1) == 1.0
    assert pacing.after_failed_try("run", 2) == 2.0  # back where it had been: still no further
    assert pacing.after_failed_try("run", 3) == 0.5


def test_runs_are_paced_apart_and_forgotten_when_they_finish() -> None:
    pacing = RetryPacing()
    pacing.after_failed_try("a", 0)
    pacing.after_failed_try("a", 0)
    assert pacing.after_failed_try("b", 0) == 0.5
    pacing.finished("a")
    assert len(pacing) == 1
    assert pacing.after_failed_try("a", 0) == 0.5


def test_the_run_tried_longest_ago_is_forgotten_past_the_cap() -> None:
    pacing = RetryPacing(max_runs=2)
    for run in ("a", "b", "a", "c"):  # "b" is now the one tried longest ago
        pacing.after_failed_try(run, 0)
    assert len(pacing) == 2
    assert pacing.after_failed_try("a", 0) == 2.0  # remembered: its third try in a row
    assert pacing.after_failed_try("b", 0) == 0.5  # forgotten: waits as a first failure


def test_the_bus_waits_as_the_handler_says_else_by_deliveries() -> None:
    assert retry_delay(TransientError("rate limited", retry_in=0.5), deliveries=7) == 0.5
    assert retry_delay(TransientError("rate limited"), deliveries=7) == 30.0
    assert retry_delay(TimeoutError(), deliveries=3) == 2.0
