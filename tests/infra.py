"""Where the tests find NATS and PostgreSQL.

NATS_URL / DATABASE_URL when they are set; otherwise embedded servers started for the session
(see services.common.devstack).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Infra:
    nats_url: str
    admin_dsn: str  # a DSN to a maintenance database, used to create and drop test databases

    def dsn_for(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def start_infra() -> Iterator[Infra]:
    # TODO(devstack): start embedded servers when the variables are unset.
    nats_url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    yield Infra(nats_url=nats_url, admin_dsn=dsn)
