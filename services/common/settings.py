"""Settings every service reads from the environment (pydantic-settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.subjects import DEFAULT_NAMESPACE, DEFAULT_STREAM, Subjects

# The share of a run's lease in which the executor trades it: the rest is for cancelling what
# rests, recording and completing the run before the scheduler may give the portfolio to another.
RUN_WINDOW = 0.9


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/rebalancer"
    bus_namespace: str = DEFAULT_NAMESPACE
    stream_name: str = DEFAULT_STREAM
    stream_replicas: int = 1
    stream_max_age_days: float = 30.0
    # Consumers fetch up to this many messages at once and handle them as one batch.
    batch_size: int = 200
    # Redeliveries of a message failing with a non-transient error before it is dead-lettered.
    max_attempts: int = 5
    # How long JetStream waits for an ack before redelivering to another consumer (a crashed
    # replica's messages come back after this). None: each consumer's own default.
    consumer_ack_wait_seconds: float | None = None
    db_pool_min: int = 1
    db_pool_max: int = 10
    ops_port: int = 9100  # /metrics, /healthz, /readyz; 0 disables
    # Per-portfolio value and drift gauges for at most this many portfolios (the most recently
    # valued); 0 turns them off. Bounds memory and scrape size whatever the number of portfolios.
    portfolio_metrics_max: int = 1000
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    # uvloop's event loop costs a fraction of asyncio's own per message (where uvloop exists: not
    # on Windows, which falls back to asyncio); "asyncio" is the fallback should one be needed.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Net new container objects between two young garbage collections (CPython's default: 700).
    # A service allocates thousands per message; at 700 the collector took 14-31 % of its CPU.
    gc_threshold: int = Field(50_000, ge=700)
    # Exchange clients (one per account) a pricer or executor keeps open; beyond it the least
    # recently used idle one is closed. A ccxt client holds ~0.3 MB besides the shared markets.
    exchange_clients_max: int = Field(2000, ge=1)
    # A run still active this long after its claim is failed by the scheduler and its portfolio
    # freed; the executor places and follows a run's orders only within RUN_WINDOW of it, so no
    # order of a run is sent or left resting once a newer run may be claimed.
    scheduler_lease_seconds: int = Field(900, ge=10)
    # Fault tests only: "<point>" makes the process SIGKILL itself when it reaches that point.
    crash_at: str = ""

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.bus_namespace)

    def consumer_name(self, service: str, purpose: str) -> str:
        """Durable consumer names are unique per namespace, so test runs never share one."""
        return f"{self.bus_namespace}-{service}-{purpose}".replace(".", "_")
