"""Exchange credentials, encrypted at rest with rotatable keys.

Keys come from ``REBALANCER_SECRET_KEYS``: comma-separated Fernet keys, the first one seals, all of
them open (so a new key can be put in front, rows re-sealed with ``rotate``, and the old key
dropped later). A ciphertext's ``key_version`` is a short fingerprint of the key that sealed it.

    python -m services.common.secrets generate-key
    python -m services.common.secrets rotate DATABASE_URL

Opening credentials registers their values with ``services.common.redact`` so that they are masked
in any log record from then on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from services.common.redact import register_secret

log = logging.getLogger(__name__)

KEYS_ENV = "REBALANCER_SECRET_KEYS"
ENV_NAME_ENV = "REBALANCER_ENV"
# Only ever used when REBALANCER_ENV=dev: anyone can read data sealed with it.
DEV_KEY = b"ZGV2LW9ubHkta2V5LW5ldmVyLXVzZS1pbi1wcm9kISE="


class SecretKeyError(RuntimeError):
    """No usable encryption key: the message says what to set."""


class CredentialsUnreadable(RuntimeError):
    """A ciphertext that none of the configured keys opens (wrong or removed key, corrupt data)."""


def mask(api_key: str | None) -> str:
    """A display hint that cannot be used: ``"ab12…f9"``; short keys are hidden completely."""
    if not api_key or len(api_key) < 10:
        return "…"
    return f"{api_key[:4]}…{api_key[-2:]}"


@dataclass(frozen=True, repr=False)
class Credentials:
    """API credentials. ``repr``/``str`` never show the values."""

    api_key: str
    secret: str
    passphrase: str | None = None
    # Exchange-specific extras by their ccxt name (uid, privateKey, walletAddress, ...).
    extra: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        extras = f", extra=<{len(self.extra)} field(s)>" if self.extra else ""
        passphrase = ", passphrase=***" if self.passphrase else ""
        return f"Credentials(api_key={mask(self.api_key)}, secret=***{passphrase}{extras})"

    __str__ = __repr__

    def values(self) -> tuple[str, ...]:
        return tuple(v for v in (self.api_key, self.secret, self.passphrase, *self.extra.values()) if v)

    def to_ccxt_config(self) -> dict[str, str]:
        config = {"apiKey": self.api_key, "secret": self.secret}
        if self.passphrase:
            config["password"] = self.passphrase
        config.update(self.extra)
        return config

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"api_key": self.api_key, "secret": self.secret}
        if self.passphrase:
            body["passphrase"] = self.passphrase
        if self.extra:
            body["extra"] = dict(self.extra)
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Credentials:
        body = json.loads(raw)
        return cls(
            api_key=body["api_key"],
            secret=body["secret"],
            passphrase=body.get("passphrase"),
            extra=dict(body.get("extra") or {}),
        )


def key_version(key: bytes) -> str:
    """A fingerprint that names a key without revealing it."""
    return "k" + hashlib.sha256(key).hexdigest()[:10]


def _keys_from_env(environ: Mapping[str, str]) -> list[bytes]:
    raw = environ.get(KEYS_ENV, "")
    keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
    if keys:
        return keys
    if environ.get(ENV_NAME_ENV, "").lower() == "dev":
        message = (
            f"{KEYS_ENV} is not set: using the built-in DEVELOPMENT key. Credentials sealed with it "
            "are readable by anyone; never use REBALANCER_ENV=dev with real API keys."
        )
        warnings.warn(message, stacklevel=3)
        log.warning(message)
        return [DEV_KEY]
    raise SecretKeyError(
        f"{KEYS_ENV} is not set. Generate a key with `python -m services.common.secrets generate-key` "
        f"and set {KEYS_ENV}=<key> (comma-separate several keys to rotate; the first one seals)."
    )


class SecretBox:
    """Seals and opens ``Credentials`` with MultiFernet; the first key is the current one."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("SecretBox needs at least one key")
        try:
            fernets = [Fernet(k) for k in keys]
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                f"{KEYS_ENV} holds a malformed key (each must be 32 url-safe base64-encoded bytes)"
            ) from exc
        self._multi = MultiFernet(fernets)
        self.current_key_version = key_version(keys[0])
        self.key_versions = tuple(key_version(k) for k in keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretBox:
        return cls(_keys_from_env(os.environ if environ is None else environ))

    def seal(self, credentials: Credentials) -> tuple[bytes, str]:
        """(ciphertext, key_version of the key that sealed it)."""
        return self._multi.encrypt(credentials.to_json()), self.current_key_version

    def open(self, ciphertext: bytes) -> Credentials:
        try:
            plain = self._multi.decrypt(bytes(ciphertext))
        except InvalidToken:
            raise CredentialsUnreadable(
                "stored credentials cannot be decrypted with any configured key "
                f"(configured: {', '.join(self.key_versions)})"
            ) from None
        credentials = Credentials.from_json(plain)
        register_secret(*credentials.values())
        return credentials

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same credentials sealed with the current key."""
        try:
            return self._multi.rotate(bytes(ciphertext))
        except InvalidToken:
            raise CredentialsUnreadable(
                "stored credentials cannot be decrypted with any configured key"
            ) from None


async def rotate_database(dsn: str, box: SecretBox) -> int:
    """Re-seal every stored credential with the current key, in one transaction; returns rows changed."""
    import asyncpg  # only the CLI needs a database driver

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT id, credentials_enc FROM exchange_connections"
                " WHERE credentials_enc IS NOT NULL FOR UPDATE"
            )
            for row in rows:
                await conn.execute(
                    "UPDATE exchange_connections SET credentials_enc = $2, key_version = $3,"
                    " updated_at = now() WHERE id = $1",
                    row["id"],
                    box.rotate(row["credentials_enc"]),
                    box.current_key_version,
                )
        return len(rows)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["generate-key"]:
        print(Fernet.generate_key().decode())
        return 0
    if args[:1] == ["rotate"]:
        dsn = args[1] if len(args) > 1 else os.environ.get("DATABASE_URL", "")
        if not dsn:
            print("error: give a database URL as argument or in DATABASE_URL", file=sys.stderr)
            return 2
        try:
            box = SecretBox.from_env()
            changed = asyncio.run(rotate_database(dsn, box))
        except (SecretKeyError, CredentialsUnreadable) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"re-sealed {changed} connection(s) with key {box.current_key_version}")
        return 0
    print("usage: python -m services.common.secrets generate-key | rotate [DATABASE_URL]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
