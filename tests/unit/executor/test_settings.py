"""The executor's settings refuse a resend wait it could not use, naming the problem."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.executor.app import ExecutorSettings


def test_a_wait_per_exchange_is_read_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR_RESEND_AFTER_SECONDS_BY_EXCHANGE", '{"kraken": 300, "binance": 30.5}')
    assert ExecutorSettings().executor_resend_after_seconds_by_exchange == {"kraken": 300, "binance": 30.5}


@pytest.mark.parametrize(("waits", "problem"), [
    ({"krakn": 300}, "'krakn' is not a ccxt exchange id"),
    ({"paper": 5}, "'paper' is not a ccxt exchange id"),
    ({"kraken": 0}, "the wait for kraken must be more than 0 seconds"),
])
def test_a_wait_for_an_unknown_exchange_or_of_no_time_is_refused(waits: dict[str, float], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as refused:
        ExecutorSettings(executor_resend_after_seconds_by_exchange=waits)
    assert "executor_resend_after_seconds_by_exchange" in str(refused.value)


def test_the_default_wait_must_be_some_time() -> None:
    with pytest.raises(ValidationError, match="more than 0 seconds"):
        ExecutorSettings(executor_resend_after_seconds=0)
