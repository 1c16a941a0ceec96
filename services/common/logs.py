"""Logging: the seed's readable lines, or JSON, with the run id on every line of a run.

``run_context(run_id)`` binds the run id for everything logged inside it (a contextvar, so it
follows the task); text lines then read ``[Rebalance:<run id>] ...`` as users of the seed know.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_run_id: ContextVar[str | None] = ContextVar("run_id", default=None)
_service: ContextVar[str] = ContextVar("service", default="rebalancer")


@contextmanager
def run_context(run_id: str | None) -> Iterator[None]:
    token = _run_id.set(run_id)
    try:
        yield
    finally:
        _run_id.reset(token)


def current_run_id() -> str | None:
    return _run_id.get()


class _RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = _run_id.get()
        record.service = _service.get()
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        prefix = f"[Rebalance:{run_id}] " if run_id else ""
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {prefix}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": getattr(record, "service", None),
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(service: str, *, fmt: str = "text", level: str = "INFO") -> None:
    """Configure the root logger once per process."""
    _service.set(service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RunIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # FastStream logs every message at INFO: that halves consumer throughput and adds nothing
    # the domain log lines don't already say.
    logging.getLogger("faststream").setLevel(max(logging.WARNING, root.level))
    try:
        from services.common.redact import install_redaction
    except ImportError:  # pragma: no cover - the redaction module ships with the package
        return
    install_redaction()
