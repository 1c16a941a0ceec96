"""Every service process (the bus services and the API) collects garbage every GC_THRESHOLD net
allocations, with start-up's objects frozen out of every collection, and times its collections
for /metrics; a threshold below CPython's own default is refused by name."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pydantic
import pytest

from services.common.settings import ServiceSettings

# In child processes: freezing and thresholds are process-wide, and the test process must keep its own.
PROBE = """
import gc, json, weakref
from services.common.runtime import tune_gc
class Node: ...
garbage = Node()
garbage.me = garbage  # a cycle that only the collector can free
freed = weakref.ref(garbage)
del garbage
tune_gc(50_000)
print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(), "freed": freed() is None}))
"""


def run_probe(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    state: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return state


def test_tune_gc_freezes_start_up_and_raises_the_young_threshold() -> None:
    state = run_probe(PROBE)
    assert state["threshold"] == [50_000, 10, 10]  # only the young generation's threshold moves
    assert isinstance(state["frozen"], int) and state["frozen"] > 10_000  # imported modules' objects
    assert state["freed"]  # collected before freezing: no garbage is kept for good


def test_the_default_and_a_threshold_below_cpythons_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GC_THRESHOLD", raising=False)
    assert ServiceSettings().gc_threshold == 50_000
    monkeypatch.setenv("GC_THRESHOLD", "100")
    with pytest.raises(pydantic.ValidationError, match="gc_threshold"):
        ServiceSettings()


def test_collections_are_timed_per_generation_once_per_process() -> None:
    from prometheus_client import REGISTRY

    from services.common import metrics

    def full_collections_seconds() -> float:
        return REGISTRY.get_sample_value("rebalancer_gc_seconds_total", {"generation": "2"}) or 0.0

    metrics.time_garbage_collections()
    metrics.time_garbage_collections()  # a second call must not count each collection twice
    assert gc.callbacks.count(metrics._COLLECTION_TIMER) == 1
    before = full_collections_seconds()
    gc.collect()
    assert full_collections_seconds() > before


# The API's entry point, with uvicorn's server replaced by a report of the process's state.
API_PROBE = """
import gc, json, uvicorn
from services.common import metrics
uvicorn.run = lambda app, **_: print(json.dumps({
    "threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
    "timed": metrics._COLLECTION_TIMER in gc.callbacks,
}))
from services.api.__main__ import main
main()
"""


def test_the_api_process_is_prepared_like_the_bus_services() -> None:
    state = run_probe(API_PROBE)
    assert state["threshold"] == [50_000, 10, 10]
    assert isinstance(state["frozen"], int) and state["frozen"] > 10_000
    assert state["timed"] is True
