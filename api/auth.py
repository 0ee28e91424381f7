"""API-key guard for writes on ``config/*`` (reads stay public).

Keys come from ``CRYPTOVIZ_API_KEYS``, each optionally with an expiry time after
which it is refused; clients send one as ``X-API-Key: <key>`` or
``Authorization: Bearer <key>``. Only SHA-256 digests are kept and compared, so
a key's length or prefix does not show in timing, and no key sits in the settings.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.errors import Unauthorized
from api.settings import ApiSettings, hash_api_key

API_KEY_HEADER = "X-API-Key"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cryptoviz", charset="UTF-8"'}


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    key = connection.headers.get(API_KEY_HEADER)
    if key:
        return key.strip()
    scheme, _, token = connection.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: the request must carry one of the app's configured API keys."""
    settings: ApiSettings = connection.app.state["api_settings"]
    digests = settings.api_key_digests
    if not digests:
        raise Unauthorized(
            "writes are disabled: no API key is configured (set CRYPTOVIZ_API_KEYS)",
            headers=_CHALLENGE,
        )
    key = presented_key(connection)
    if key is None:
        raise Unauthorized(
            f"this write needs an API key: send it as '{API_KEY_HEADER}: <key>' "
            "or 'Authorization: Bearer <key>'",
            headers=_CHALLENGE,
        )
    digest = hash_api_key(key)
    # Compare against every key (no early exit), so timing tells nothing either.
    matched = False
    for known in digests:
        matched |= hmac.compare_digest(digest, known)
    if not matched:
        raise Unauthorized("the API key is not valid", headers=_CHALLENGE)
    expires = settings.api_key_expiry.get(digest)
    if expires is not None and datetime.now(UTC) >= expires:
        raise Unauthorized(
            f"the API key expired at {expires.isoformat()}: ask for a new one",
            headers=_CHALLENGE,
        )
