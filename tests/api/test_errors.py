"""Every bad input gets the right 4xx, naming the parameter and the accepted values."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.api.conftest import API_KEY

Client = TestClient[Litestar]
T = "/api/v1/ticker/BTC/USD/historique/"


@pytest.mark.parametrize(
    ("url", "status", "parameter", "mentions"),
    [
        (f"{T}?periode=2h", 400, "periode", ["1h", "24h", "7d", "30d", "live"]),
        (f"{T}?periode=", 400, "periode", ["24h"]),
        (f"{T}?date_debut=yesterday", 400, "date_debut", ["ISO-8601", "epoch"]),
        (f"{T}?date_debut=2026-01-15T25:00:00", 400, "date_debut", ["ISO-8601"]),
        (f"{T}?page=3", 400, "page", ["cursor"]),
        (f"{T}?date_fin=2026-13-01T00:00:00Z", 400, "date_fin", ["ISO-8601"]),
        (f"{T}?date_debut=3000-01-01T00:00:00Z", 400, "date_debut", ["between"]),
        (f"{T}?date_debut=99999999999", 400, "date_debut", ["between"]),
        (f"{T}?date_debut=0001-01-01T00:00:00%2B14:00", 400, "date_debut", ["between"]),
        (
            f"{T}?date_debut=2026-01-15T10:00:00Z&date_fin=2026-01-15T09:00:00Z",
            400,
            "date_debut",
            ["before"],
        ),
        (
            f"{T}?date_debut=2025-01-01T00:00:00Z&date_fin=2026-01-01T00:00:00Z",
            400,
            "date_fin",
            ["maximum", "90 days"],
        ),
        (
            f"{T}?periode=1h&date_debut=2026-01-15T09:00:00Z&date_fin=2026-01-15T10:00:00Z",
            400,
            "periode",
            ["date_debut", "date_fin"],
        ),
        (f"{T}?limit=0", 400, "limit", ["1 to 1000"]),
        (f"{T}?limit=1001", 400, "limit", ["1 to 1000"]),
        (f"{T}?limit=ten", 400, "limit", ["1 to 1000"]),
        (f"{T}?cursor=not-a-cursor", 400, "cursor", ["next"]),
        (f"{T}?cursor=" + "A" * 2000, 400, "cursor", []),
        ("/api/v1/ticker/FOO/USD/historique/", 404, "pair", ["BTC", "USD"]),
        ("/api/v1/ticker/BTC/XYZ/historique/", 404, "pair", ["quote"]),
        ("/api/v1/ticker/BTC/BTC/historique/", 400, "pair", ["BASE/QUOTE"]),
        ("/api/v1/ticker/historique/?pair=garbage", 400, "pair", ["BASE/QUOTE"]),
        ("/api/v1/ticker/historique/", 400, "pair", ["missing"]),
        ("/api/v1/trade/historique/?pair=FOO/USD", 404, "pair", []),
        ("/api/v1/sentiment/NOTACOIN/historique/", 404, "symbol", ["BTC"]),
        ("/api/v1/prediction/dogecoinz/historique/", 404, "symbol", []),
        ("/api/v1/article/historique/?crypto_symbol=zzz", 404, "crypto_symbol", []),
        ("/api/v1/alert/historique/?pair=FOO/BAR", 404, "pair", []),
        ("/api/v1/prix/FOO/temps_reel/", 404, "symbol", []),
        ("/api/v1/prix/BTC/temps_reel/?quote=XYZ", 404, "quote", []),
        ("/api/v1/prix/BTC/temps_reel/", 404, "symbol", ["no price"]),
        ("/api/v1/predictions/FOO/", 404, "symbol", []),
        ("/api/v1/candles/BTC/USD/?interval=2h", 400, "interval", ["1m", "4h", "1d"]),
        ("/api/v1/candles/BTC/USD/?interval=1h&limit=5000", 400, "limit", []),
        ("/api/v1/config/crypto/FOO/", 404, "symbol", []),
        ("/api/v1/config/crypto/SOL/?x=1", 200, None, []),
        ("/api/v1/config/visualization/0/", 400, "visualization_id", ["positive"]),
        ("/api/v1/config/visualization/99/", 404, "visualization_id", []),
        ("/api/v1/config/visualization/abc/", 404, None, []),
        ("/api/v1/config/visualization/?symbol=nope", 404, "symbol", []),
        ("/api/v1/nothing-here/", 404, None, []),
    ],
)
def test_bad_input_answers_4xx(
    module_client: Client, url: str, status: int, parameter: str | None, mentions: list[str]
) -> None:
    r = module_client.get(url)
    assert r.status_code == status, r.text
    if status == 200:
        return
    body = r.json()
    assert body["status_code"] == status
    assert body.get("parameter") == parameter
    for word in mentions:
        assert word in body["detail"], body["detail"]
    assert "Traceback" not in r.text
    assert "SELECT" not in r.text


def test_wrong_method_is_405(module_client: Client) -> None:
    r = module_client.delete("/api/v1/cryptos/")
    assert r.status_code == 405
    assert r.json()["status_code"] == 405


@pytest.mark.parametrize(
    ("body", "field", "mentions"),
    [
        ({"symbol": "BTC"}, "name", ["name"]),
        ({"symbol": "", "name": "x"}, "symbol", ["length"]),
        ({"symbol": "XRP", "name": "   "}, "name", ["blank"]),
        ({"symbol": "XRP", "name": "x" * 101}, "name", ["length"]),
        ({"symbol": "XRP", "name": "Ripple", "active": "yes"}, "active", ["bool"]),
        ({"symbol": "XRP", "name": "Ripple", "colour": "red"}, "colour", ["unknown"]),
        (
            {"symbol": "NOPE", "name": "Nope"},
            "symbol",
            ["'NOPE' is not in the coin table", "[coins.NOPE]", "CRYPTOVIZ_COINS_FILE"],
        ),
    ],
)
def test_bad_crypto_config_bodies(
    module_client: Client, body: dict[str, object], field: str, mentions: list[str]
) -> None:
    r = module_client.post("/api/v1/config/crypto/", json=body, headers={"X-API-Key": API_KEY})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert r.json().get("parameter") == field, r.json()
    for word in mentions:
        assert word in detail, detail


def test_body_that_is_not_json(module_client: Client) -> None:
    r = module_client.post(
        "/api/v1/config/crypto/",
        content=b"{not json",
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert "body" in r.json()["detail"]


# The path and required query parameters of the listings, filled with a known coin.
_FILL = {"{base}": "BTC", "{quote}": "USD", "{symbol}": "BTC"}
_REQUIRED = {"pair": "BTC/USD"}


def _listings(schema: dict[str, Any]) -> list[str]:
    """Every GET route of the API whose answer holds ``data`` rows (from the OpenAPI
    schema, so a listing added later is found), as a concrete URL."""

    def holds_rows(node: dict[str, Any]) -> bool:
        if "$ref" in node:
            node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
        alternatives = node.get("oneOf", []) + node.get("anyOf", [])
        return "data" in node.get("properties", {}) or any(map(holds_rows, alternatives))

    urls = []
    for route, methods in schema["paths"].items():
        get = methods.get("get")
        if not route.startswith("/api/v1/") or get is None:
            continue
        body = get["responses"]["200"]["content"]["application/json"]["schema"]
        if not holds_rows(body):
            continue
        path = route
        for placeholder, value in _FILL.items():
            path = path.replace(placeholder, value)
        assert "{" not in path, route
        query = {p["name"]: _REQUIRED[p["name"]] for p in get.get("parameters", [])
                 if p["in"] == "query" and p.get("required")}  # fmt: skip
        urls.append(f"{path}/?{urlencode(query)}")
    return urls


def test_no_listing_answers_page_two_with_its_first_page_again(module_client: Client) -> None:
    """Every listing either pages by cursor or answers every row at once; in both cases
    the prototype's ``?page=2`` is a 400 naming ``page``, never the same rows again
    (issue 12: page numbers honoured or refused)."""
    urls = _listings(module_client.get("/docs/openapi.json").json())
    assert "/api/v1/predictions/BTC/?" in urls  # a seed route (DOCUMENTATION_TECHNIQUE.md)
    assert len(urls) >= 14
    for url in urls:
        assert module_client.get(url).status_code == 200, url
        refused = module_client.get(f"{url}&page=2")
        assert refused.status_code == 400, (url, refused.text)
        assert refused.json()["parameter"] == "page", url
