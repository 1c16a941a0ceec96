"""Secrets the local stack keeps beside its embedded data, so that re-runs reuse them."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.fernet import Fernet

SECRET_KEYS_ENV = "REBALANCER_SECRET_KEYS"


def load_or_create_secret(path: Path, create: Callable[[], str]) -> str:
    """The secret stored at ``path``, or a new one from ``create`` written there readable by its
    owner only (created with that mode: never briefly world-readable)."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = create()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def local_secret_keys(state_dir: Path, environ: Mapping[str, str]) -> str:
    """``REBALANCER_SECRET_KEYS`` as set, or a Fernet key made once for this local stack's embedded
    database, so the demo can store exchange keys without any setup. (Never used for a database
    named by DATABASE_URL: data there is sealed with keys the stack does not know.)"""
    configured = environ.get(SECRET_KEYS_ENV, "").strip()
    if configured:
        return configured
    return load_or_create_secret(state_dir / "secret-key", lambda: Fernet.generate_key().decode())
