"""What route handlers get injected: the app's services and clock, as one object."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from api.candle_cache import CandleCache
from api.db import Database
from api.live import LiveRelay
from api.row_cache import RowCache
from api.settings import ApiSettings
from api.symbols import Symbols
from api.telemetry import Telemetry


def utc_now() -> datetime:
    return datetime.now(UTC)


class ApiContext:
    """The services of one app (dependency ``ctx`` of every handler)."""

    def __init__(
        self,
        *,
        settings: ApiSettings,
        db: Database,
        symbols: Symbols,
        telemetry: Telemetry,
        live: LiveRelay,
        kafka_bootstrap: str | None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.candles = CandleCache(settings.candle_cache_s)
        self.rows = RowCache(settings.row_cache_rows, telemetry.row_cache_rows)
        self.settings = settings
        self.db = db
        self.symbols = symbols
        self.telemetry = telemetry
        self.live = live
        self.kafka_bootstrap = kafka_bootstrap
        self.clock = clock

    def now(self) -> datetime:
        return self.clock()
