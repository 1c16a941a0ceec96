"""The API's settings (environment variables, as every service's)."""

from __future__ import annotations

from services.common.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    api_host: str = "0.0.0.0"
    api_port: int = 8000
    # Check a new exchange connection (markets load, keys work) before saving it. Only tests that
    # have no exchange to talk to turn this off.
    api_verify_connections: bool = True
    # POST /api/v1/users creates a user and returns its first token.
    api_allow_signup: bool = True
    # How long the dry-run preview waits for the pricer and for the planner, each.
    api_rpc_timeout_seconds: float = 10.0
