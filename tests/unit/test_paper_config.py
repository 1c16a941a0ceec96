"""PaperConfig: environment parsing and fault schedules."""

from __future__ import annotations

import pytest

from services.common.exchanges.paper_config import (
    PROCESS_FAULT_COUNTER,
    Fault,
    FaultCounter,
    FaultKind,
    PaperConfig,
    parse_faults,
)


def test_defaults_are_instant_unlimited_and_faultless() -> None:
    config = PaperConfig.from_env({})
    assert config == PaperConfig()
    assert (config.latency_seconds, config.rate_limit_per_second, config.faults) == (0.0, None, ())
    assert config.fault_counter is PROCESS_FAULT_COUNTER  # the process numbers its orders once


def test_from_env_reads_latency_rate_and_faults() -> None:
    config = PaperConfig.from_env({
        "PAPER_LATENCY_MS": "50", "PAPER_RATE_LIMIT": "20",
        "PAPER_FAULTS": "drop_response=1, timeout=2|5 ,unavailable=every:10",
    })
    assert config.latency_seconds == pytest.approx(0.05)
    assert config.rate_limit_per_second == 20
    assert config.faults == (
        Fault(FaultKind.DROP_RESPONSE, frozenset({1})),
        Fault(FaultKind.TIMEOUT, frozenset({2, 5})),
        Fault(FaultKind.UNAVAILABLE, every=10),
    )


def test_fault_schedule_picks_the_first_matching_fault() -> None:
    config = PaperConfig(faults=parse_faults("drop_response=1,timeout=2|5,unavailable=every:5"))
    assert [config.fault_for(n) for n in range(1, 11)] == [
        FaultKind.DROP_RESPONSE, FaultKind.TIMEOUT, None, None, FaultKind.TIMEOUT,
        None, None, None, None, FaultKind.UNAVAILABLE,
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("explode=1", "unknown paper fault 'explode'"),
        ("drop_response", "is not kind=WHEN"),
        ("timeout=0", "expected a call number"),
        ("timeout=every:0", "expected a call number"),
        ("timeout=x", "expected a call number"),
    ],
)
def test_bad_fault_specs_are_rejected_with_the_item(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(spec)


@pytest.mark.parametrize(
    ("env", "message"),
    [({"PAPER_LATENCY_MS": "fast"}, "PAPER_LATENCY_MS must be a number"),
     ({"PAPER_RATE_LIMIT": "-1"}, "PAPER_RATE_LIMIT must be >= 0")],
)
def test_bad_numbers_in_the_environment_are_rejected(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PaperConfig.from_env(env)


def test_zero_rate_limit_in_the_environment_means_unlimited() -> None:
    assert PaperConfig.from_env({"PAPER_RATE_LIMIT": "0"}).rate_limit_per_second is None


def test_counter_numbers_calls_from_one() -> None:
    counter = FaultCounter()
    assert [counter.next_call() for _ in range(3)] == [1, 2, 3]
    assert counter.calls == 3
