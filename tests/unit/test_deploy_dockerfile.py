"""Static checks of deploy/Dockerfile: slim base, non-root, one image whose command picks the service."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined
    ]


def final_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (op, _) in enumerate(parsed) if op == "FROM")
    return parsed[last_from:]


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = instructions("# c\nFROM a AS b\nRUN x \\\n  && y\n\nUSER 1\n")
    assert parsed == [("FROM", "a AS b"), ("RUN", "x  && y"), ("USER", "1")]


def test_runtime_image_is_slim_python_3_11() -> None:
    stage = final_stage(instructions(DOCKERFILE.read_text()))
    assert stage[0][1].split()[0] == "python:3.11-slim"


def test_runtime_runs_as_a_numeric_non_root_user() -> None:
    stage = final_stage(instructions(DOCKERFILE.read_text()))
    users = [args for op, args in stage if op == "USER"]
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "Kubernetes runAsNonRoot needs a numeric non-zero uid"
    # Nothing after USER may switch back to root.
    after_user = stage[max(i for i, (op, _) in enumerate(stage) if op == "USER") :]
    assert all(op != "USER" or args.split(":")[0] not in {"0", "root"} for op, args in after_user)


def test_the_command_chooses_the_service_module() -> None:
    stage = final_stage(instructions(DOCKERFILE.read_text()))
    entrypoint = [json.loads(args) for op, args in stage if op == "ENTRYPOINT"]
    command = [json.loads(args) for op, args in stage if op == "CMD"]
    assert entrypoint == [["python", "-m"]]
    module = command[-1][0]
    assert (ROOT / Path(*module.split("."))).is_dir(), f"CMD names a missing package {module}"


def test_build_copies_only_existing_sources_that_the_dockerignore_lets_through() -> None:
    parsed = instructions(DOCKERFILE.read_text())
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].split("/")[0] for line in ignore if line.startswith("!")}
    for op, args in parsed:
        if op != "COPY" or args.startswith("--from"):
            continue
        sources = args.split()[:-1]
        for source in sources:
            if source.endswith("*"):  # optional file
                continue
            assert (ROOT / source).exists(), f"COPY of missing {source}"
            assert source in allowed, f"{source} is excluded by Dockerfile.dockerignore"
