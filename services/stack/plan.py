"""Pure decisions of the stack runner: which children, with what environment, what to print."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# Start order: consumers before the producers that feed them; the api last, so that when it
# answers every service behind it is already listening.
SERVICES: tuple[str, ...] = ("ledger", "executor", "planner", "pricer", "scheduler", "api")

# How often the scheduler looks for due portfolios, in the stack: short, so a demo moves at once.
SCHEDULER_CHECK_INTERVAL_SECONDS = "2"


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True)
class StackPorts:
    api: int
    ops: Mapping[str, int]  # per service: /metrics, /healthz, /readyz


def child_env(base: Mapping[str, str], service: str, *, nats_url: str, database_url: str,
              ports: StackPorts, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one service: the caller's, with the stack's settings on top."""
    env = dict(base)
    env.update(extra or {})
    env.update({
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "OPS_PORT": str(ports.ops[service]),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(ports.api),
        "SCHEDULER_CHECK_INTERVAL": env.get("SCHEDULER_CHECK_INTERVAL",
                                            SCHEDULER_CHECK_INTERVAL_SECONDS),
        "PYTHONUNBUFFERED": "1",  # lines reach the prefixed console as they are written
    })
    return env


def child_specs(python: str, base_env: Mapping[str, str], *, nats_url: str, database_url: str,
                ports: StackPorts, services: tuple[str, ...] = SERVICES,
                extra: Mapping[str, str] | None = None) -> list[ChildSpec]:
    return [ChildSpec(name=name, argv=(python, "-m", f"services.{name}"),
                      env=child_env(base_env, name, nats_url=nats_url, database_url=database_url,
                                    ports=ports, extra=extra))
            for name in services]


_NAME_WIDTH = max(len(name) for name in SERVICES)


def prefix_line(name: str, line: str, width: int = _NAME_WIDTH) -> str:
    """``scheduler | message``: children's output, told apart on one console."""
    return f"{name:<{width}} | {line.rstrip()}"


def trigger_curl(api_url: str, token: str, portfolio_id: str) -> str:
    """A one-line shell command that asks the API to rebalance the portfolio now."""
    body = json.dumps({"portfolioId": portfolio_id})
    return " ".join([
        "curl", "-sS", "-X", "POST", shlex.quote(f"{api_url}/api/scheduler/trigger"),
        "-H", shlex.quote(f"Authorization: Bearer {token}"),
        "-H", shlex.quote("Content-Type: application/json"),
        "-d", shlex.quote(body),
    ])


def with_database(dsn: str, database: str) -> str:
    """The same server, another database."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


def history_curl(api_url: str, token: str, portfolio_id: str) -> str:
    """A one-line shell command that lists the portfolio's runs, newest first."""
    return " ".join([
        "curl", "-sS", shlex.quote(f"{api_url}/api/v1/portfolios/{portfolio_id}/history"),
        "-H", shlex.quote(f"Authorization: Bearer {token}"),
    ])
