"""Every subject name on the bus, in one place.

Subjects follow ``<namespace>.v1.<evt|cmd>.<entity>.<fact>``. The namespace is configurable so
that test runs (and tenants of a shared NATS) never see each other's messages; production uses
the default ``rebalancer``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "rebalancer"
DEFAULT_STREAM = "REBALANCER"


@dataclass(frozen=True)
class Subjects:
    namespace: str = DEFAULT_NAMESPACE

    def _s(self, kind: str, entity: str, fact: str) -> str:
        return f"{self.namespace}.v1.{kind}.{entity}.{fact}"

    # Commands
    @property
    def rebalance_request(self) -> str:
        return self._s("cmd", "rebalance", "request")

    @property
    def scheduler_control(self) -> str:
        return self._s("cmd", "scheduler", "control")

    @property
    def orders_abandon(self) -> str:
        return self._s("cmd", "orders", "abandon")

    # Events of one run, in flow order
    @property
    def rebalance_due(self) -> str:
        return self._s("evt", "rebalance", "due")

    @property
    def portfolio_valued(self) -> str:
        return self._s("evt", "portfolio", "valued")

    @property
    def plan_created(self) -> str:
        return self._s("evt", "plan", "created")

    @property
    def order_submitted(self) -> str:
        return self._s("evt", "order", "submitted")

    @property
    def order_filled(self) -> str:
        return self._s("evt", "order", "filled")

    @property
    def order_rejected(self) -> str:
        return self._s("evt", "order", "rejected")

    @property
    def order_failed(self) -> str:
        return self._s("evt", "order", "failed")

    @property
    def orders_reported(self) -> str:
        return self._s("evt", "order", "reported")

    @property
    def rebalance_completed(self) -> str:
        return self._s("evt", "rebalance", "completed")

    # Request-reply (core NATS, outside the stream: a JetStream-captured subject would answer
    # the request with a PubAck). Used by the API's dry-run preview.
    @property
    def rpc_value_portfolio(self) -> str:
        return f"rpc.{self.namespace}.v1.portfolio.value"

    @property
    def rpc_preview_plan(self) -> str:
        return f"rpc.{self.namespace}.v1.plan.preview"

    # Announcements to every process that listens (core NATS, outside the stream: nothing is
    # stored, and each replica gets its own copy).
    @property
    def connection_changed(self) -> str:
        return f"bcast.{self.namespace}.v1.connection.changed"

    # Wildcards
    @property
    def all_events(self) -> str:
        return f"{self.namespace}.v1.evt.>"

    @property
    def order_events(self) -> str:
        return f"{self.namespace}.v1.evt.order.*"

    @property
    def stream_subjects(self) -> list[str]:
        return [f"{self.namespace}.>"]
