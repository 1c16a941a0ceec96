"""Error answers in one shape: ``{"success": false, "error": "...", "detail": ...}``.

A 422 lists every bad field in ``detail`` as ``{"loc": ["body", "<field>"], "msg", "type"}`` (the
FastAPI shape) without echoing the input back: a rejected body may hold an API secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.api.schemas import ErrorBody

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or invalid token"},
    404: {"model": ErrorBody, "description": "not found (or not yours)"},
}


def invalid(problems: Sequence[tuple[str, str]]) -> RequestValidationError:
    """A 422 naming each (field, message), like the request model's own errors."""
    return RequestValidationError(
        [{"loc": ("body", field), "msg": message, "type": "value_error"} for field, message in problems]
    )


def _clean_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    cleaned = []
    for error in errors:
        loc = [str(part) if not isinstance(part, int) else part for part in error.get("loc", ())]
        message = str(error.get("msg", "invalid"))
        cleaned.append({"loc": loc, "msg": message, "type": str(error.get("type", "value_error"))})
    return cleaned


def _field_names(errors: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for error in errors:
        loc = [str(p) for p in error["loc"] if p not in ("body", "query", "path")]
        name = ".".join(loc) or "body"
        if name not in names:
            names.append(name)
    return names


def install_error_handlers(app: FastAPI) -> None:
    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return JSONResponse(
            {"success": False, "error": message, "detail": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _clean_errors(exc.errors())
        fields = _field_names(errors)
        return JSONResponse(
            {"success": False, "error": f"invalid: {', '.join(fields)}", "fields": fields, "detail": errors},
            status_code=422,
        )

    async def foreign_key_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"success": False, "error": "still referenced by another record", "detail": None},
            status_code=409,
        )

    async def unique_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"success": False, "error": "already exists", "detail": None}, status_code=409
        )

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(asyncpg.ForeignKeyViolationError, foreign_key_error)
    app.add_exception_handler(asyncpg.UniqueViolationError, unique_error)
