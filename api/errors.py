"""The API's one exception root and its mapping to HTTP, in one place.

Code raises :class:`ApiError` subclasses carrying a ``detail`` written for the
client. :func:`exception_handlers` turns those, Litestar's own HTTP and
validation errors, database outages and anything unexpected into one JSON shape
(:class:`ErrorBody`). Nothing else in the package builds an error response, so a
stack trace or an SQL fragment can never reach a client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from handlers import CryptoVizError

log = logging.getLogger("api.errors")


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Every error response: the HTTP status again, and what to do about it."""

    status_code: int
    detail: str
    parameter: str | None = None
    """The query/path parameter or body field at fault, when there is one."""


class ApiError(CryptoVizError):
    """Root of every error the API raises on purpose; ``detail`` is shown to the client.

    A :class:`handlers.CryptoVizError` like every other error of the project; only the
    API's subclasses carry an HTTP status.
    """

    status_code: int = HTTP_400_BAD_REQUEST

    def __init__(
        self,
        detail: str,
        *,
        parameter: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.parameter = parameter
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status_code = HTTP_400_BAD_REQUEST


class NotFound(ApiError):
    status_code = HTTP_404_NOT_FOUND


class Unauthorized(ApiError):
    status_code = HTTP_401_UNAUTHORIZED


class Conflict(ApiError):
    status_code = HTTP_409_CONFLICT


class Unavailable(ApiError):
    """A dependency (database, Kafka) is down; the client may retry."""

    status_code = HTTP_503_SERVICE_UNAVAILABLE


# How each parameter or body field is described when Litestar's own type check
# rejects it (it knows the expected type, not the accepted values clients need).
PARAMETER_HELP: dict[str, str] = {
    "limit": "an integer from 1 to 1000",
    "periode": "one of 1m, 5m, 15m, 30m, 1h, 6h, 12h, 24h, 7d, 30d, live",
    "interval": "one of 1m, 5m, 15m, 1h, 4h, 1d",
    "visualization_id": "a positive integer",
    "active": "true or false",
    "name": "a text of 1 to 100 characters",
    "symbol": "a coin symbol, name or alias (BTC, bitcoin, xbt)",
    "chart_type": "one of line, candlestick, area, bar, ohlc",
    "time_range": "one of 1m, 5m, 15m, 30m, 1h, 6h, 12h, 24h, 7d, 30d, live",
    "indicators": "a list of at most 10 of sma, ema, wma, rsi, macd, bollinger, vwap, "
    "volume, atr, stoch, each optionally with a period (sma:20)",
}


def _response(
    status: int, detail: str, parameter: str | None = None, headers: Mapping[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(status_code=status, detail=detail, parameter=parameter),
        status_code=status,
        media_type=MediaType.JSON,
        headers=dict(headers or {}),
    )


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    return _response(exc.status_code, exc.detail, exc.parameter, exc.headers)


_MISSING = re.compile(r"^Missing required (\w+) parameter '([^']+)'")
_BODY_FIELD = re.compile(r"at `\$\.([A-Za-z0-9_]+)|field `([A-Za-z0-9_]+)`")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorBody]:
    """Litestar's signature/body validation, reworded to name the parameter and its values."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key") or "")
        source = str(item.get("source") or "")
        message = str(item.get("message") or "invalid value")
        if source == "body":
            # Litestar names the field in ``key`` ("data" for the body as a whole, when
            # msgspec names the field in the message instead).
            found = _BODY_FIELD.search(message)
            field = key if key not in ("", "data") else (found[1] or found[2]) if found else None
            where = f" field {field!r}" if field else ""
            accepted = PARAMETER_HELP.get(re.sub(r"\[\d+\]$", "", field or ""))
            hint = f"; expected {accepted}" if accepted else ""
            return _response(
                HTTP_400_BAD_REQUEST, f"invalid request body{where}: {message}{hint}", field
            )
        if key:
            raw = request.query_params.get(key) if source == "query" else None
            shown = f" {raw!r}" if raw is not None else ""
            accepted = PARAMETER_HELP.get(key)
            hint = f"; expected {accepted}" if accepted else f" ({message})"
            where = "path parameter" if source == "path" else "query parameter"
            return _response(
                HTTP_400_BAD_REQUEST, f"invalid value{shown} for {where} {key!r}{hint}", key
            )
    detail = str(exc.detail) if exc.detail else "invalid request"
    missing = _MISSING.match(detail)
    if missing is not None:
        kind, name = missing[1], missing[2]
        accepted = PARAMETER_HELP.get(name)
        hint = f"; expected {accepted}" if accepted else ""
        return _response(
            HTTP_400_BAD_REQUEST, f"missing required {kind} parameter {name!r}{hint}", name
        )
    return _response(HTTP_400_BAD_REQUEST, detail)


def _client_error(request: Request[Any, Any, Any], exc: ClientException) -> Response[ErrorBody]:
    # Raised by Litestar for a body it cannot decode (msgspec's message is safe to show).
    detail = str(exc.detail)
    if request.method in _BODY_METHODS and exc.status_code == HTTP_400_BAD_REQUEST:
        detail = f"invalid request body: {detail}"
    return _response(exc.status_code, detail, headers=exc.headers)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    # Litestar's own HTTP errors (404 route, 405, 429 ...) carry safe, fixed messages.
    return _response(exc.status_code, str(exc.detail), headers=exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    # Logged with its traceback for operators; the client only learns that it failed.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _response(HTTP_500_INTERNAL_SERVER_ERROR, "internal error; it has been logged")


def _too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorBody]:
    # msgspec decodes request bodies recursively: a body nested thousands of levels
    # deep exhausts the stack before any validation runs. It is the client's input.
    return _response(HTTP_400_BAD_REQUEST, "request body is nested too deeply")


def exception_handlers() -> dict[type[Exception] | int, Callable[..., Response[ErrorBody]]]:
    """The app's exception handler mapping (the only place errors become responses)."""
    return {
        ApiError: _api_error,
        ValidationException: _validation_error,
        ClientException: _client_error,
        HTTPException: _http_error,
        RecursionError: _too_deep,
        Exception: _unexpected,
    }


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries documenting :class:`ErrorBody` for ``statuses``."""
    described = {
        400: "Invalid parameter or body; `detail` names it and the accepted values",
        401: "Missing or invalid API key",
        404: "Unknown symbol, pair or resource",
        409: "Conflicts with an existing resource",
        429: "Rate limit exceeded; see the RateLimit-* headers",
        503: "A dependency (database) is unavailable; retry after Retry-After seconds",
    }
    return {
        status: ResponseSpec(data_container=ErrorBody, description=described[status])
        for status in statuses
    }
