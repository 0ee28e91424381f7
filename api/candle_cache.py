"""A short-lived, per-process cache of completed candles.

Plain PostgreSQL has no continuous aggregate: 1h candles over 30 days aggregate a
million ticks per request. Candles of buckets that ended a while ago (``GRACE``)
almost never change, so the API keeps those for ``CRYPTOVIZ_CANDLE_CACHE_S``
seconds (default 60, 0 disables) and only recomputes the current bucket(s) on each
request: the same trade-off as TimescaleDB's refresh policy (materialized older
buckets, real-time aggregation of recent ones), with staleness bounded by the TTL
if a very late tick lands in an old bucket.

Single flight: concurrent requests for the same uncached range wait for one
computation instead of each starting their own. Bounded: least recently used
entries go first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from datetime import timedelta
from typing import Final

from api.models import Candle

GRACE: Final = timedelta(minutes=1)
"""A bucket is cached once it ended at least this long ago (ingestion lag margin)."""


class CandleCache:
    def __init__(self, ttl_s: float, max_entries: int = 256) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, list[Candle]]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Future[list[Candle]]] = {}

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0

    async def get(
        self, key: Hashable, compute: Callable[[], Awaitable[list[Candle]]]
    ) -> list[Candle]:
        if not self.enabled:
            return await compute()
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            self._entries.move_to_end(key)
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request itself was cancelled
                return await compute()  # the computing request went away: do it here
        future: asyncio.Future[list[Candle]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            rows = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark it retrieved: only the waiters re-raise it
            raise
        else:
            future.set_result(rows)
            self._entries[key] = (time.monotonic() + self._ttl_s, rows)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            return rows
        finally:
            del self._inflight[key]
