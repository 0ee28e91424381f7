"""Rate limiting with standard headers, and CORS from the settings."""

from __future__ import annotations

from litestar.testing import TestClient

from api.settings import RateLimit
from tests.api.conftest import AppFactory, test_api_settings


def test_rate_limit_with_standard_headers(app_factory: AppFactory) -> None:
    app = app_factory(test_api_settings(rate_limit=RateLimit(requests=3, per="minute")))
    with TestClient(app) as client:
        remaining = []
        for _ in range(3):
            r = client.get("/api/v1/cryptos/")
            assert r.status_code == 200
            assert r.headers["RateLimit-Limit"] == "3"
            assert r.headers["RateLimit-Policy"] == "3; w=60"
            assert int(r.headers["RateLimit-Reset"]) <= 60
            remaining.append(r.headers["RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        refused = client.get("/api/v1/ticker/BTC/USD/historique/")
        assert refused.status_code == 429
        assert refused.json()["status_code"] == 429
        assert refused.headers["RateLimit-Remaining"] == "0"
        # Probes, scrapers and the docs are never limited.
        for _ in range(5):
            assert client.get("/metrics").status_code == 200
            assert client.get("/api/v1/health/").status_code in (200, 503)
        assert client.get("/docs/openapi.json").status_code == 200


def test_cors_origins_come_from_the_settings(app_factory: AppFactory) -> None:
    app = app_factory(test_api_settings(cors_origins=("https://dash.example.org",)))
    with TestClient(app) as client:
        allowed = client.get("/api/v1/cryptos/", headers={"Origin": "https://dash.example.org"})
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://dash.example.org"
        preflight = client.options(
            "/api/v1/config/crypto/",
            headers={
                "Origin": "https://dash.example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "X-API-Key, Content-Type",
            },
        )
        assert preflight.status_code in (200, 204)
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        other = client.get("/api/v1/cryptos/", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
    with TestClient(app_factory()) as client:
        none = client.get("/api/v1/cryptos/", headers={"Origin": "https://dash.example.org"})
        assert "Access-Control-Allow-Origin" not in none.headers


def test_openapi_and_docs_page(app_factory: AppFactory) -> None:
    with TestClient(app_factory()) as client:
        schema = client.get("/docs/openapi.json").json()
        paths = schema["paths"]
        for path in (
            "/api/v1/ticker/{base}/{quote}/historique",
            "/api/v1/candles/{base}/{quote}",
            "/api/v1/health",
            "/api/v1/config/visualization/{visualization_id}",
        ):
            assert path in paths
        params = {
            p["name"]
            for p in paths["/api/v1/ticker/{base}/{quote}/historique"]["get"]["parameters"]
        }
        assert {"periode", "date_debut", "date_fin", "limit", "cursor", "base", "quote"} <= params
        # Forecast routes take a horizon (seconds, at least 1); the report takes a range.
        for path in (
            "/api/v1/predictions/{symbol}",
            "/api/v1/predictions/{symbol}/accuracy",
            "/api/v1/prediction/{symbol}/historique",
        ):
            got = {p["name"]: p for p in paths[path]["get"]["parameters"]}
            assert got["horizon"]["schema"]["minimum"] == 1, path
            assert "horizon" in got["horizon"]["description"].lower(), path
        report = {
            p["name"] for p in paths["/api/v1/predictions/{symbol}/accuracy"]["get"]["parameters"]
        }
        assert {"periode", "date_debut", "date_fin"} <= report
        assert not {"limit", "cursor"} & report
        page = client.get("/docs")
        assert page.status_code == 200
        assert "swagger" in page.text.lower()
