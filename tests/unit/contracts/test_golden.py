"""Golden JSON of every v1 message: today's serialization of a fixed sample must equal the
committed file, and the committed file must still parse. A renamed field, a changed type or a
Decimal turned float breaks this on purpose: such a change needs a v2 (DESIGN.md).

After an intended, compatible change (a new optional field), regenerate with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/contracts/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import contracts.v1 as v1
from tests.unit.contracts.samples import samples

GOLDEN = Path(__file__).parent / "golden"
SAMPLES = samples()


def render(name: str) -> str:
    return json.dumps(json.loads(SAMPLES[name].model_dump_json()), indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_serialization_equals_the_golden_file(name: str) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(render(name), encoding="utf-8")
    assert path.exists(), f"no golden file for {name}: run with UPDATE_GOLDEN=1"
    golden = path.read_text(encoding="utf-8")
    # Compare parsed values (a string "1" is not the number 1) and also the exact text, so a
    # field that moves or a Decimal that loses trailing zeros shows up in the diff.
    assert json.loads(render(name)) == json.loads(golden)
    assert render(name) == golden


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_golden_file_still_parses_into_the_same_message(name: str) -> None:
    model = getattr(v1, name)
    parsed = model.model_validate_json((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    assert parsed == SAMPLES[name]


def test_there_is_no_stray_golden_file() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(SAMPLES)
