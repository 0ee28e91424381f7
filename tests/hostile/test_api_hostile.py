"""Hostile API clients: SQL injection, oversized requests, WebSocket floods, auth, secret leaks.

Schema-driven no-5xx fuzzing of every endpoint is ``tests/api/test_fuzz.py``
(schemathesis); this module adds targeted hostile inputs and checks what a
status code alone cannot show: no row altered, limits enforced, other clients
unaffected, no secret in any read response.
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from psycopg import sql

from api.settings import hash_api_key
from infra.settings import Settings
from tests.api import seed
from tests.api.conftest import API_KEY, EXPIRED_KEY, NOW, AppFactory, serve

pytestmark = pytest.mark.integration

Client = TestClient[Litestar]
AUTH = {"X-API-Key": API_KEY}

INJECTIONS: tuple[str, ...] = (
    "' OR '1'='1",
    "BTC' OR 1=1 --",
    "'; DROP TABLE crypto_config; --",
    "BTC/USD'; DELETE FROM ticker_data; --",
    "1; UPDATE crypto_config SET active = false",
    "' UNION SELECT usename, passwd FROM pg_shadow --",
    "BTC'||(SELECT pg_sleep(3))||'",
    "1) OR (1=1",
    "$$; TRUNCATE ticker_data; $$",
    "\\'; SELECT 1; --",
    "BTC%' --",
    "%",
    "_",
    "*",
    "BTC\x00' OR 1=1",
    "\U0001f600'; --",
    "1e400",
    "-9223372036854775809",
    "../../etc/passwd",
)

PATH_DEFAULTS = {
    "base": "BTC", "quote": "USD", "symbol": "BTC", "visualization_id": "1",
}  # fmt: skip


def _read_endpoints(app: Litestar) -> list[tuple[str, list[tuple[str, str]]]]:
    """(path template, [(param, in)]) of every GET operation in the OpenAPI schema."""
    schema = app.openapi_schema.to_schema()
    out = []
    for path, item in schema["paths"].items():
        op = item.get("get")
        if op is not None:
            out.append((path, [(p["name"], p["in"]) for p in op.get("parameters", [])]))
    return out


def _url(template: str, path_values: dict[str, str], query: dict[str, str]) -> str:
    path = template
    for name, value in path_values.items():
        path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
    if not path.endswith("/"):
        path += "/"
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def _checksums(url: str) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent checksum of every table in the database."""
    out = {}
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        assert tables
        for table in sorted(tables):
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))),"
                " '') FROM {} t"
            ).format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
    return out


@pytest.fixture
def seeded(fresh_db: str) -> str:
    start = NOW - timedelta(hours=2)
    with psycopg.connect(fresh_db) as conn:
        seed.tickers(
            conn,
            (
                (start + timedelta(minutes=i), pair, Decimal(100 + i), Decimal(99), Decimal(101),
                 Decimal(5), None, None, None, None, None, None)
                for i in range(60)
                for pair in ("BTC/USD", "ETH/USD")
            ),
        )  # fmt: skip
    return fresh_db


@pytest.fixture
def client(app_factory: AppFactory, seeded: str) -> Iterator[Client]:
    with TestClient(app_factory(database_url=seeded)) as test_client:
        yield test_client


# -- SQL injection --------------------------------------------------------------------------------


def test_sql_injection_in_every_read_parameter_alters_nothing(client: Client, seeded: str) -> None:
    made = client.post(
        "/api/v1/config/visualization/",
        json={"name": "BTC day", "symbol": "BTC", "time_range": "24h", "chart_type": "line"},
        headers=AUTH,
    )
    assert made.status_code == 201, made.text
    assert client.get("/api/v1/ticker/BTC/USD/historique/?periode=24h").json()  # rows to protect
    before = _checksums(seeded)
    assert before["crypto_configuration"][0] > 0
    assert before["ticker_data"][0] == 120

    endpoints = _read_endpoints(client.app)
    requests = 0
    for template, params in endpoints:
        for name, where in params:
            for attack in INJECTIONS:
                path_values = {n: PATH_DEFAULTS[n] for n, w in params if w == "path"}
                query: dict[str, str] = {}
                if where == "path":
                    path_values[name] = attack
                else:
                    query[name] = attack
                url = _url(template, path_values, query)
                started = time.monotonic()
                r = client.get(url)
                requests += 1
                assert r.status_code < 500, (url, r.status_code, r.text[:300])
                assert time.monotonic() - started < 2.5, f"{url}: a pg_sleep ran?"
                body = r.text.lower()
                # (The rejected input itself may be echoed back in a 400 detail.)
                for leak in ("syntax error", "psycopg", "scram-sha-256", "traceback"):
                    assert leak not in body, (url, r.text[:300])
    assert requests > 500
    assert _checksums(seeded) == before


# -- oversized requests ---------------------------------------------------------------------------


def test_oversized_query_strings_and_bodies_are_refused_not_crashed(client: Client) -> None:
    # (httpx itself refuses URLs over 64 KiB; longer request lines: the real-server test.)
    for size in (1_000, 10_000, 60_000):
        r = client.get(f"/api/v1/ticker/historique/?pair={'A' * size}&periode=24h")
        assert 400 <= r.status_code < 500, (size, r.status_code)
        r = client.get("/api/v1/cryptos/?" + "&".join(f"k{i}=v" for i in range(size // 10)))
        assert r.status_code < 500
    big = b'{"symbol":"XRP","name":"' + b"x" * (12 * 1024 * 1024) + b'"}'
    headers = {**AUTH, "Content-Type": "application/json"}
    r = client.post("/api/v1/config/crypto/", content=big, headers=headers)
    assert r.status_code == 413, r.status_code
    assert client.post("/api/v1/config/crypto/", content=big).status_code == 401
    deep = b'{"symbol":' * 10_000 + b'"X"' + b"}" * 10_000
    assert client.post("/api/v1/config/crypto/", content=deep).status_code == 401
    r = client.post("/api/v1/config/crypto/", content=b"\xff\xfe" * 1000, headers=headers)
    assert 400 <= r.status_code < 500, r.status_code
    assert client.get("/api/v1/health/").status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/config/crypto/", b'{"symbol":' * 1_000 + b'"X"' + b"}" * 1_000),
        ("/api/v1/config/visualization/", b"[" * 10_000 + b"]" * 10_000),
    ],
)
def test_deeply_nested_bodies_are_client_errors(client: Client, path: str, body: bytes) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    r = client.post(path, content=body, headers=headers)
    assert 400 <= r.status_code < 500, r.status_code


def test_oversized_request_line_over_a_real_server(app_factory: AppFactory, seeded: str) -> None:
    with serve(app_factory(database_url=seeded)) as port:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            for size in (100_000, 1_000_000):
                status = _raw_get(port, f"/api/v1/ticker/historique/?pair={'A' * size}")
                # None: the server closed the connection without answering (refused).
                assert status is None or 400 <= status < 500, (size, status)
            r = http.get("/api/v1/cryptos/", headers={"X-Junk": "j" * 100_000})
            assert r.status_code < 500
            assert http.get("/api/v1/health/").status_code == 200


def _raw_get(port: int, target: str) -> int | None:
    """Send one raw HTTP/1.1 GET (any length); the status code, or None if none came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        with contextlib.suppress(OSError):  # the server may close before reading it all
            conn.sendall(request.encode())
        try:
            head = conn.recv(64)
        except OSError:
            return None
    if not head.startswith(b"HTTP/1.1 "):
        return None
    return int(head.split()[1])


# -- WebSocket floods and malformed subscriptions -------------------------------------------------

MALFORMED: tuple[str, ...] = (
    "not json",
    "",
    "{",
    "[]",
    "null",
    '{"action":"subscribe"}',
    '{"action":"subscribe","channels":"ticker:BTC/USD"}',
    '{"action":"subscribe","channels":[1,2,3]}',
    '{"action":"drop","channels":[]}',
    '{"action":"subscribe","channels":["ticker:BTC/USD"],"extra":1}',
    '{"action":"subscribe","channels":["weather:BTC"]}',
    '{"action":"subscribe","channels":["ticker:FOO/BAR"]}',
    '{"action":"subscribe","channels":["ticker:' + "A" * 100 + '"]}',
    '{"action":"subscribe","channels":["sentiment"]}',
    '{"action":"subscribe","channels":["ticker:BTC/USD\'; DROP TABLE x; --"]}',
    '{"action":"subscribe","channels":[' + '"a",' * 1000 + '"a"]}',
    '{"action":"subscribe","channels":[' + '"a",' * 3000 + '"a"]}',
    "[" * 5000 + "]" * 5000,
    '{"action":"subscribe","channels":["' + "x" * 10_000 + '"]}',
)


COINS = ("ADA", "AVAX", "BTC", "DOGE", "DOT", "ETH", "LINK", "LTC", "POL", "SOL", "XMR", "XRP")


def _valid_channels() -> list[str]:
    symbols = COINS
    out = ["alert", "article"]
    for s in symbols:
        out += [f"ticker:{s}/USD", f"trade:{s}/USD", f"alert:{s}/USD", f"sentiment:{s}",
                f"prediction:{s}", f"article:{s}"]  # fmt: skip
    return out


def test_websocket_flood_and_malformed_commands(client: Client) -> None:
    with client.websocket_connect("/ws/live") as ws, client.websocket_connect("/ws/live") as other:
        flood = [MALFORMED[i % len(MALFORMED)] for i in range(1_500)]
        for command in flood:
            ws.send_text(command)
        ws.send_json({"action": "subscribe", "channels": ["article"]})  # the end marker
        # Replies share the socket's bounded backlog (oldest dropped when full), so
        # fewer than 1,500 may come back; every one must be an error, then the marker.
        replies = []
        while (reply := ws.receive_json(timeout=10))["type"] != "subscribed":
            replies.append(reply)
            assert len(replies) <= len(flood)
        assert reply == {"type": "subscribed", "channels": ["article"]}
        assert replies
        assert all(r["type"] == "error" and r["detail"] for r in replies)
        ws.send_text("x" * 9000)
        assert "longer than 8192" in ws.receive_json(timeout=5)["detail"]

        # The other client is unaffected, and the flooded socket still works.
        other.send_json({"action": "subscribe", "channels": ["ticker:BTC/USD"]})
        assert other.receive_json(timeout=5) == {
            "type": "subscribed",
            "channels": ["ticker:BTC/USD"],
        }
        ws.send_json({"action": "subscribe", "channels": ["alert"]})
        assert ws.receive_json(timeout=5) == {
            "type": "subscribed",
            "channels": ["alert", "article"],
        }

        # At most 50 channels per connection.
        channels = _valid_channels()
        assert len(channels) > 50, channels
        ws.send_json({"action": "subscribe", "channels": channels})
        reply = ws.receive_json(timeout=5)
        assert reply["type"] == "error"
        assert "at most 50 channels" in reply["detail"]
        ws.send_json({"action": "unsubscribe", "channels": []})
        assert len(ws.receive_json(timeout=5)["channels"]) == 50
        assert client.get("/api/v1/health/").status_code == 200


def test_many_sockets_opened_and_dropped_leave_the_server_up(client: Client) -> None:
    for i in range(200):
        with client.websocket_connect("/ws/live") as ws:
            if i % 2:
                ws.send_text("{" * 100)
            else:
                ws.send_bytes(b"\xff\x00" * 100)  # a binary frame where text is expected
    with client.websocket_connect("/ws/live") as ws:
        ws.send_json({"action": "subscribe", "channels": ["article"]})
        assert ws.receive_json(timeout=5) == {"type": "subscribed", "channels": ["article"]}
    health = client.get("/api/v1/health/")
    assert health.status_code == 200


# -- authentication on every write endpoint -------------------------------------------------------

WRITES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("POST", "/api/v1/config/crypto/", {"symbol": "XRP", "name": "XRP"}),
    ("PUT", "/api/v1/config/crypto/BTC/", {"name": "pwned", "active": False}),
    ("PATCH", "/api/v1/config/crypto/BTC/", {"active": False}),
    ("DELETE", "/api/v1/config/crypto/BTC/", {}),
    ("POST", "/api/v1/config/visualization/",
     {"name": "x", "symbol": "BTC", "time_range": "24h", "chart_type": "line"}),
    ("PUT", "/api/v1/config/visualization/1/",
     {"name": "x", "symbol": "BTC", "time_range": "24h", "chart_type": "line"}),
    ("PATCH", "/api/v1/config/visualization/1/", {"name": "y"}),
    ("DELETE", "/api/v1/config/visualization/1/", {}),
)  # fmt: skip

BAD_CREDENTIALS: dict[str, dict[str, str]] = {
    "missing": {},
    "empty key": {"X-API-Key": ""},
    "wrong key": {"X-API-Key": "not-the-key"},
    "key minus one char": {"X-API-Key": API_KEY[:-1]},
    "key plus one char": {"X-API-Key": API_KEY + "x"},
    "key upper-cased": {"X-API-Key": API_KEY.upper() if API_KEY.upper() != API_KEY else "Q"},
    "digest instead of key": {"X-API-Key": hash_api_key(API_KEY)},
    "wrong bearer": {"Authorization": "Bearer not-the-key"},
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": f"Basic {API_KEY}"},
    "key as cookie": {"Cookie": f"X-API-Key={API_KEY}"},
    "sql in key": {"X-API-Key": "' OR '1'='1"},
    "expired key": {"X-API-Key": EXPIRED_KEY},
    "expired key as bearer": {"Authorization": f"Bearer {EXPIRED_KEY}"},
}


def test_every_write_endpoint_refuses_bad_credentials(client: Client, seeded: str) -> None:
    made = client.post("/api/v1/config/visualization/", json=WRITES[4][2], headers=AUTH)
    assert made.status_code == 201
    assert made.json()["id"] == 1
    routes = client.app.openapi_schema.to_schema()["paths"]
    write_ops = {
        (m.upper(), p)
        for p, item in routes.items()
        for m in item
        if m in {"post", "put", "patch", "delete"}
    }
    assert {(m, p.rstrip("/").replace("BTC", "{symbol}").replace("/1", "/{visualization_id}"))
            for m, p, _ in WRITES} == write_ops  # fmt: skip
    before = _checksums(seeded)
    in_query = f"?api_key={urllib.parse.quote(API_KEY)}&key={urllib.parse.quote(API_KEY)}"
    attempts = [*BAD_CREDENTIALS.items(), ("key in the query string", {})]
    for method, path, body in WRITES:
        for name, headers in attempts:
            url = path + in_query if name == "key in the query string" else path
            r = client.request(method, url, json=body or None, headers=headers)
            assert r.status_code == 401, (method, url, name, r.status_code)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            if name.startswith("expired"):
                assert "expired at 2026-01-01T00:00:00+00:00" in r.json()["detail"]
    assert _checksums(seeded) == before
    # The control: the same requests with the key do get through.
    ok = client.request(
        "PATCH", "/api/v1/config/visualization/1/", json={"name": "y"}, headers=AUTH
    )
    assert ok.status_code == 200, ok.text
    assert _checksums(seeded) != before


# -- no secret in read responses ------------------------------------------------------------------


def test_read_endpoints_leak_no_secret(
    app_factory: AppFactory, stack: Settings, seeded: str
) -> None:
    password = "s3cret-Pa55word-" + API_KEY[:8]
    # The embedded server trusts local connections, so the password only has to be in
    # DATABASE_URL (where a deployment keeps it): no role on the shared server changes.
    with_password = psycopg.conninfo.make_conninfo(seeded, password=password)
    settings = stack.with_servers(database=with_password)
    secrets = (password, API_KEY, hash_api_key(API_KEY))
    with TestClient(app_factory(settings=settings)) as client:
        paths = [
            "/api/v1/health/", "/api/v1/cryptos/", "/api/v1/config/crypto/",
            "/api/v1/config/crypto/BTC/", "/api/v1/config/visualization/",
            "/api/v1/config/crypto/NOPE/", "/api/v1/config/visualization/999/",
            "/api/v1/ticker/historique/?pair=%27", "/api/v1/ticker/historique/?limit=-1",
            "/schema/openapi.json", "/metrics", "/api/v1/nope/",
        ]  # fmt: skip
        seen = 0
        for path in paths:
            r = client.get(path)
            assert r.status_code < 500, (path, r.status_code)
            text = r.text + "".join(f"{k}: {v}\n" for k, v in r.headers.items())
            for secret in secrets:
                assert secret not in text, (path, "leaks a secret")
            assert "postgresql://" not in text, path
            assert "postgres://" not in text, path
            seen += r.status_code == 200
        assert seen >= 6
