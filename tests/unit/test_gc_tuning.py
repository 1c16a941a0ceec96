"""The bus services collect garbage every GC_THRESHOLD net allocations, with start-up's objects
frozen out of every collection; a threshold below CPython's own default is refused by name."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pydantic
import pytest

from services.common.settings import ServiceSettings

# In a child process: freezing and thresholds are process-wide, and the test process must keep its own.
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


def test_tune_gc_freezes_start_up_and_raises_the_young_threshold() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    state = json.loads(out)
    assert state["threshold"] == [50_000, 10, 10]  # only the young generation's threshold moves
    assert state["frozen"] > 10_000  # the imported modules' objects are out of every collection
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
