"""Shared test helpers: the real coin table, a fixed clock, exact-decimal fixtures."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from handlers import CoinTable, HandlerContext, Rejection

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "handlers"
SHARED_KRAKEN = REPO.parent / "shared" / "fixtures" / "real" / "kraken"

NOW = datetime(2026, 10, 1, tzinfo=UTC)
"""After every fixture time (the latest real capture is 2026-09-24)."""

with (REPO / "infra" / "coins.toml").open("rb") as _fh:
    COIN_DATA: dict[str, Any] = tomllib.load(_fh)
COINS = CoinTable.from_mapping(COIN_DATA)

_DECODER = msgspec.json.Decoder(float_hook=Decimal)
_ENCODER = msgspec.json.Encoder(decimal_format="number")
SEEDS: dict[str, dict[str, dict[str, Any]]] = _DECODER.decode(
    (FIXTURES / "seed_messages.json").read_bytes()
)

T = TypeVar("T")


def ctx(now: datetime = NOW, max_future: timedelta = timedelta(days=1)) -> HandlerContext:
    return HandlerContext(coins=COINS, now=now, max_future=max_future)


def encode(value: object) -> bytes:
    """JSON with decimals written digit-for-digit (so ``0.99980`` stays ``0.99980``)."""
    return _ENCODER.encode(value)


def seed(topic: str, name: str) -> dict[str, Any]:
    """A copy of one example message from ``seed_messages.json`` (decimals exact)."""
    return dict(SEEDS[topic][name])


def variant(topic: str, name: str, **changes: Any) -> bytes:
    """An example message with fields replaced (``None`` deletes the field)."""
    message = seed(topic, name)
    for key, value in changes.items():
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    return encode(message)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def ok(result: T | Rejection, kind: type[T]) -> T:
    assert not isinstance(result, Rejection), result
    assert isinstance(result, kind), result
    return result


def rejected(result: object) -> Rejection:
    assert isinstance(result, Rejection), result
    return result
