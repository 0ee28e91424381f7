"""Valid and invalid raw messages for each topic, in the seeds' shapes."""

from __future__ import annotations

import json
from collections.abc import Callable

BASE_TS = 1_764_310_291.0  # 2025-11-28, the seeds' example time

PAIRS = ("BTC/USD", "ETH/USD", "SOL/USD", "XBT/EUR")


def ticker(i: int) -> bytes:
    price = 30_000 + (i % 1000) / 100
    return json.dumps(
        {"pair": PAIRS[i % len(PAIRS)], "last": price, "bid": price - 1, "ask": price + 1,
         "volume_24h": 1200.5, "timestamp": BASE_TS + i / 1000}
    ).encode()  # fmt: skip


def trade(i: int) -> bytes:
    return json.dumps(
        {"pair": PAIRS[i % len(PAIRS)], "price": 2400.5 + i % 7, "volume": 0.1 + i % 3,
         "timestamp": BASE_TS + i / 1000, "side": "bs"[i % 2], "trade_id": 1_000_000 + i}
    ).encode()  # fmt: skip


def article(i: int) -> bytes:
    return json.dumps(
        {"id": f"cointelegraph_{i}", "title": f"Bitcoin story number {i}",
         "url": f"https://cointelegraph.com/news/story-{i}", "website": "cointelegraph.com",
         "content": {"summary": "Bitcoin and Ethereum rallied."},
         "published_at": "2025-11-28T06:11:31Z", "cryptocurrencies_mentioned": ["BTC", "ETH"],
         "sentiment": {"score": 0.75, "label": "positive"}}
    ).encode()  # fmt: skip


def alert(i: int) -> bytes:
    return json.dumps(
        {"pair": PAIRS[i % len(PAIRS)], "last": 34000 + i, "change": 1.2 if i % 2 else -1.3,
         "threshold": 1, "timestamp": BASE_TS + i}
    ).encode()  # fmt: skip


INVALID: tuple[bytes, ...] = (
    b"",
    b"not json at all",
    b'{"pair": "BTC/USD", "last": -3, "timestamp": 1764310291}',
    b'{"truncated": ',
    b"\xff\xfe\x00 invalid utf-8",
    b"[1, 2, 3]",
    b'{"pair": "BTC/USD", "last": "NaN", "price": "NaN", "timestamp": 1764310291}',
    # far in the future (year 5138)
    b'{"pair": "BTC/USD", "last": 1, "price": 1, "volume": 1, "side": "b", '
    b'"timestamp": 99999999999}',
)

VALID: dict[str, Callable[[int], bytes]] = {
    "rawticker": ticker,
    "rawtrade": trade,
    "rawarticle": article,
    "rawalert": alert,
}
