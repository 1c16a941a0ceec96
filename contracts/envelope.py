"""The envelope every message carries, and helpers to derive deterministic ids.

Money and quantities are ``Decimal`` and travel as strings. Models are frozen and ignore unknown
fields, so a newer producer never breaks an older consumer; a breaking change is a new ``v2``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from operator import methodcaller
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

SCHEMA_VERSION: Literal[1] = 1

# Decimal that serializes as a JSON string ("0.10000000"), never as a float nor in exponent form.
# methodcaller, not a lambda: called for every Decimal of every message, without a Python frame.
Money = Annotated[Decimal, PlainSerializer(methodcaller("__format__", "f"), return_type=str, when_used="json")]

# A fixed namespace for uuid5 so that every service derives the same id for the same fact.
_ID_NAMESPACE = uuid.UUID("6f1c8a52-0b7e-4f55-9b8e-1d5c8e1e2a90")


def derived_id(*parts: object) -> str:
    """A deterministic message id: the same fact always gets the same id, so a redelivered
    input produces an output that downstream inboxes (and JetStream dedup) recognise."""
    return uuid5_hex(_ID_NAMESPACE, "/".join(str(p) for p in parts), dashed=True)


def uuid5_hex(namespace: uuid.UUID, name: str, *, dashed: bool) -> str:
    """``str(uuid.uuid5(namespace, name))`` (or its ``.hex`` when not ``dashed``) without building
    UUID objects: three times faster, and ids are derived for every leg of every run."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" if dashed else h


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every payload part: frozen, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Envelope(Contract):
    """Fields every message on the bus carries."""

    message_id: str = Field(default_factory=new_id)
    correlation_id: str  # the rebalance run id
    causation_id: str | None = None  # the message_id of the message that caused this one
    occurred_at: datetime = Field(default_factory=utcnow)
    schema_version: Literal[1] = SCHEMA_VERSION

    def caused(self) -> dict[str, Any]:
        """Envelope fields for a message caused by this one."""
        return {"correlation_id": self.correlation_id, "causation_id": self.message_id}
