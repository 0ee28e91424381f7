"""Config CRUD with field validation; API-key authentication of writes."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.api.conftest import API_KEY, AppFactory, test_api_settings

Client = TestClient[Litestar]
AUTH = {"X-API-Key": API_KEY}


def test_crypto_crud(client: Client) -> None:
    assert [c["symbol"] for c in client.get("/api/v1/config/crypto/").json()["data"]] == [
        "ADA", "BTC", "DOT", "ETH", "LINK", "SOL"
    ]  # fmt: skip
    created = client.post(
        "/api/v1/config/crypto/", json={"symbol": "xrp", "name": "  XRP   Ledger "}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["symbol"], body["name"], body["active"]) == ("XRP", "XRP Ledger", True)
    assert body["created_at"].endswith("Z")
    again = client.post("/api/v1/config/crypto/", json={"symbol": "XRP", "name": "x"}, headers=AUTH)
    assert again.status_code == 409
    got = client.get("/api/v1/config/crypto/xrp/").json()
    assert got == body
    patched = client.patch("/api/v1/config/crypto/XRP/", json={"active": False}, headers=AUTH)
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["active"]) == ("XRP Ledger", False)
    replaced = client.put(
        "/api/v1/config/crypto/XRP/", json={"name": "Ripple", "active": True}, headers=AUTH
    )
    assert (replaced.json()["name"], replaced.json()["active"]) == ("Ripple", True)
    assert (
        client.put("/api/v1/config/crypto/XRP/", json={"name": "x"}, headers=AUTH).status_code
        == 400
    )
    assert client.delete("/api/v1/config/crypto/xrp/", headers=AUTH).status_code == 204
    assert client.get("/api/v1/config/crypto/XRP/").status_code == 404
    assert client.delete("/api/v1/config/crypto/XRP/", headers=AUTH).status_code == 404
    assert client.patch("/api/v1/config/crypto/XRP/", json={}, headers=AUTH).status_code == 404


def test_visualization_crud(client: Client) -> None:
    spec = {
        "name": "BTC day",
        "symbol": "bitcoin",
        "time_range": "24h",
        "chart_type": "candlestick",
        "indicators": ["sma:20", "rsi:14", "sma:20", "volume"],
    }
    created = client.post("/api/v1/config/visualization/", json=spec, headers=AUTH)
    assert created.status_code == 201, created.text
    body = created.json()
    viz_id = body["id"]
    assert {k: body[k] for k in spec} == {
        **spec,
        "symbol": "BTC",
        "indicators": ["sma:20", "rsi:14", "volume"],
    }
    other = client.post(
        "/api/v1/config/visualization/",
        json={"name": "ETH week", "symbol": "ETH", "time_range": "7d", "chart_type": "line"},
        headers=AUTH,
    ).json()
    assert other["indicators"] == []
    assert client.post("/api/v1/config/visualization/", json=spec, headers=AUTH).status_code == 409
    assert client.get("/api/v1/config/visualization/").json()["count"] == 2
    only = client.get("/api/v1/config/visualization/?symbol=xbt").json()
    assert [v["id"] for v in only["data"]] == [viz_id]
    patched = client.patch(
        f"/api/v1/config/visualization/{viz_id}/", json={"time_range": "7d"}, headers=AUTH
    ).json()
    assert (patched["time_range"], patched["chart_type"]) == ("7d", "candlestick")
    clash = client.patch(
        f"/api/v1/config/visualization/{viz_id}/", json={"name": "ETH week"}, headers=AUTH
    )
    assert clash.status_code == 409
    replaced = client.put(
        f"/api/v1/config/visualization/{viz_id}/",
        json={"name": "BTC month", "symbol": "BTC", "time_range": "30d", "chart_type": "area"},
        headers=AUTH,
    ).json()
    assert (replaced["name"], replaced["indicators"]) == ("BTC month", [])
    assert client.get(f"/api/v1/config/visualization/{viz_id}/").json() == replaced
    assert client.delete(f"/api/v1/config/visualization/{viz_id}/", headers=AUTH).status_code == 204
    assert client.get(f"/api/v1/config/visualization/{viz_id}/").status_code == 404


def test_visualization_field_validation(client: Client) -> None:
    good = {"name": "n", "symbol": "BTC", "time_range": "24h", "chart_type": "line"}
    cases = [
        ({**good, "time_range": "2h"}, "time_range", "24h"),
        ({**good, "chart_type": "pie"}, "chart_type", "candlestick"),
        ({**good, "indicators": ["magic"]}, "indicators", "sma:20"),
        ({**good, "indicators": ["sma:0"]}, "indicators", "sma:20"),
        ({**good, "indicators": ["ema"] * 11}, "indicators", "length"),
        ({**good, "name": ""}, "name", "length"),
        ({**good, "name": "\u0000bad"}, "name", "printable"),
        ({k: v for k, v in good.items() if k != "chart_type"}, "chart_type", "chart_type"),
    ]
    for body, field, mention in cases:
        r = client.post("/api/v1/config/visualization/", json=body, headers=AUTH)
        assert r.status_code == 400, (body, r.text)
        # A list item is named with its index ("indicators[0]").
        assert r.json()["parameter"].startswith(field), (body, r.json())
        assert mention in r.json()["detail"], (body, r.json())
    bad_symbol = client.post(
        "/api/v1/config/visualization/", json={**good, "symbol": "nope"}, headers=AUTH
    )
    assert bad_symbol.status_code == 404


def test_a_coin_the_coin_table_does_not_know_is_refused_with_how_to_add_it(
    client: Client,
) -> None:
    r = client.post("/api/v1/config/crypto/", json={"symbol": "pepe", "name": "Pepe"}, headers=AUTH)
    assert r.status_code == 400
    body = r.json()
    assert body["parameter"] == "symbol"
    for step in ("[coins.PEPE]", "infra/coins.toml", "CRYPTOVIZ_COINS_FILE", "`tracked`",
                 "PEPE/USD", "restart", "XRP"):  # fmt: skip
        assert step in body["detail"], step
    assert client.get("/api/v1/config/crypto/PEPE/").status_code == 404
    # A coin of the coin table that was never configured is accepted (by any alias).
    added = client.post(
        "/api/v1/config/crypto/", json={"symbol": "xdg", "name": "Doge"}, headers=AUTH
    )
    assert (added.status_code, added.json()["symbol"]) == (201, "DOGE")


@pytest.mark.parametrize(
    "path", ["/api/v1/config/crypto/", "/api/v1/config/visualization/", "/api/v1/cryptos/"]
)
def test_an_unpaged_listing_refuses_page_numbers_instead_of_repeating_itself(
    client: Client, path: str
) -> None:
    """These listings answer every row at once: the prototype's ``?page=2`` is a 400
    saying so (answering the whole list again would duplicate it in a client that
    pages), ``page_size`` too; ``page=1`` is that one answer."""
    whole = client.get(path).json()
    assert whole["count"] == len(whole["data"])
    assert client.get(f"{path}?page=1").json() == whole
    for query, parameter in (("page=2", "page"), ("page=x", "page"), ("page_size=10", "page_size")):
        r = client.get(f"{path}?{query}")
        assert r.status_code == 400, (path, query, r.text)
        body = r.json()
        assert body["parameter"] == parameter
        assert "not paged" in body["detail"]
        assert "every row" in body["detail"]


def test_writes_need_a_valid_api_key(client: Client) -> None:
    body = {"symbol": "XRP", "name": "XRP"}
    missing = client.post("/api/v1/config/crypto/", json=body)
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.post("/api/v1/config/crypto/", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "the API key is not valid"
    for method in ("put", "patch", "delete"):
        r = client.request(
            method.upper(), "/api/v1/config/crypto/BTC/", json={"name": "x", "active": True}
        )
        assert r.status_code == 401, method
    assert client.delete("/api/v1/config/visualization/1/").status_code == 401
    bearer = client.post(
        "/api/v1/config/crypto/", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert bearer.status_code == 201
    # Reads stay public.
    assert client.get("/api/v1/config/crypto/XRP/").status_code == 200


def test_writes_are_refused_when_no_key_is_configured(app_factory: AppFactory) -> None:
    with TestClient(app_factory(test_api_settings(api_key_digests=frozenset()))) as client:
        r = client.post("/api/v1/config/crypto/", json={"symbol": "XRP", "name": "x"}, headers=AUTH)
    assert r.status_code == 401
    assert "CRYPTOVIZ_API_KEYS" in r.json()["detail"]
