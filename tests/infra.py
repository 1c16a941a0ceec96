"""Where the tests find NATS and PostgreSQL.

NATS_URL / DATABASE_URL when they are set (and answer; a set variable that does not answer fails
the session with a message naming it); otherwise embedded servers started for the whole session
in a temporary directory, removed afterwards (see services.common.devstack).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.common.devstack import resolve_infra


def database_name(dsn: str) -> str:
    """The database a DSN names."""
    return urlsplit(dsn).path.lstrip("/")


@dataclass(frozen=True)
class Infra:
    nats_url: str
    admin_dsn: str  # a DSN to a maintenance database, used to create and drop test databases

    def dsn_for(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def start_infra() -> Iterator[Infra]:
    # /tmp, not a pytest tmp_path: the unprivileged PostgreSQL user must be able to traverse it.
    state_dir = Path(tempfile.mkdtemp(prefix="rebalancer-test-"))
    state_dir.chmod(0o755)
    try:
        with resolve_infra(state_dir, durable=False) as infra:
            yield Infra(nats_url=infra.nats_url, admin_dsn=infra.database_url)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
