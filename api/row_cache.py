"""A per-process cache of encoded history rows that never change, and the page read
through it.

The 1,000-row ticker page spends most of its CPU on rows: PostgreSQL casting eleven
``numeric`` columns to ``float8``, psycopg loading them, 1,000 ``TickerPoint``s built
and encoded to JSON (docs/BENCHMARKS.md). A ticker row never changes once written
(``api.queries.page_query``'s ``immutable``), so its JSON is the same every time it
is served. A page of such a listing is read in two steps (:class:`~api.queries.
StampReads`): the stamps of the page's rows (an index scan, no casts, each stamp an
``int``), then only the rows not in this cache (the range from the newest missing one
to the oldest); the body's ``data`` is the cached JSON of its rows joined (one
``msgspec.Raw``), byte for byte the body built from rows. The stamps are read on
every request, so a page is never stale: a row added, back-filled or deleted shows
at once; only a row's *values* are taken from here.

Bounded by ``CRYPTOVIZ_API_ROW_CACHE_ROWS`` rows (0: off), in two generations: rows
go into the young one; when the next rows would take it past half the bound it
becomes the old one and the previous old one is dropped; a row found in the old one
is moved back to the young one. So the rows served recently stay, and a lookup is
one dict access, with no per-row bookkeeping of recency.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import msgspec
from prometheus_client import Counter

from api.db import Database, stamp_time
from api.params import Page
from api.queries import PageQuery, page_params

Series = Hashable
"""What a row's stamp is unique within: a listing's body type and subject."""

_ENCODER = msgspec.json.Encoder()


class RowCache:
    """Encoded rows by (series, stamp), at most ``max_rows`` of them (0: disabled)."""

    def __init__(self, max_rows: int, counted: Counter | None = None) -> None:
        self.max_rows = max_rows
        self._half = max(max_rows // 2, 1)
        self._young: dict[Series, dict[int, bytes]] = {}
        self._old: dict[Series, dict[int, bytes]] = {}
        self._young_rows = 0
        self._hits = counted.labels("hit") if counted is not None else None
        self._misses = counted.labels("miss") if counted is not None else None

    @property
    def enabled(self) -> bool:
        return self.max_rows > 0

    def __len__(self) -> int:
        """Rows held (a row moved back from the old generation counts once)."""
        young = self._young
        old = sum(1 for s, rows in self._old.items() for k in rows if k not in young.get(s, ()))
        return self._young_rows + old

    def get(self, series: Series, stamps: Sequence[int]) -> list[bytes | None]:
        """The encoded row of each stamp, ``None`` where it is not held."""
        young = self._young.get(series)
        found: list[bytes | None] = (
            list(map(young.get, stamps)) if young is not None else [None] * len(stamps)
        )
        misses = 0
        if None in found:
            old = self._old.get(series, {})
            again: dict[int, bytes] = {}
            for i, stamp in enumerate(stamps):
                if found[i] is None:
                    row = old.get(stamp)
                    if row is None:
                        misses += 1
                    else:
                        found[i] = again[stamp] = row
            if again:
                self.put(series, again)
        if self._hits is not None and self._misses is not None:
            self._hits.inc(len(stamps) - misses)
            if misses:
                self._misses.inc(misses)
        return found

    def put(self, series: Series, rows: dict[int, bytes]) -> None:
        """Hold ``rows`` (at most half the bound of them: the first ones)."""
        if len(rows) > self._half:
            rows = dict(itertools.islice(rows.items(), self._half))
        if self._young_rows + len(rows) > self._half:
            self._old, self._young, self._young_rows = self._young, {}, 0
        young = self._young.get(series)
        if young is None:
            young = self._young[series] = {}
        held = len(young)
        young.update(rows)
        self._young_rows += len(young) - held


class EncodedPage(msgspec.Struct, frozen=True):
    """A page's rows as one encoded JSON array, and the last one's timestamp when more
    follow."""

    data: msgspec.Raw
    count: int
    last: datetime | None
    """The timestamp of the last row when another page follows."""


def members(points: Sequence[Any]) -> list[bytes]:
    """The JSON of each point without its braces: the list encoded at once (a third of
    the CPU of one call per point) and cut at the ``},{`` between the points."""
    if not points:
        return []
    cut = _ENCODER.encode(points)[2:-2].split(b"},{")
    if len(cut) != len(points):  # "},{" inside a value too: one point at a time
        return [_ENCODER.encode(p)[1:-1] for p in points]
    return cut


def array(found: list[bytes]) -> msgspec.Raw:
    """The JSON array of the objects whose :func:`members` are ``found``."""
    return msgspec.Raw(b"[{" + b"},{".join(found) + b"}]" if found else b"[]")


async def fetch_encoded_page(
    db: Database,
    cache: RowCache,
    query: PageQuery[Any],
    page: Page,
    key: str,
    *,
    series: Series,
    point: Callable[[Any], Any] | None = None,
    filters: Mapping[str, Any] | None = None,
) -> EncodedPage | None:
    """Up to ``page.limit`` rows of ``query`` (which has :class:`StampReads`) for
    subject ``key`` (and the query's other parameters ``filters``), encoded as
    ``point(row)`` (or the row), through ``cache``.

    ``None`` when the rows changed between the two reads (one deleted by retention,
    or back-filled): the caller reads the page in one statement instead.
    """
    reads = query.by_stamp
    assert reads is not None, f"{query.name} is not read by stamp"
    stamps = await db.fetch(reads.stamps, page_params(query, page, key, (), filters))
    shown = stamps[: page.limit]
    found = cache.get(series, shown)
    if None in found:
        # The rows from the newest missing one down to the oldest, hits between included.
        first = found.index(None)
        last = len(found) - 1 - found[::-1].index(None)
        span = shown[first : last + 1]
        bounds = {"newest": stamp_time(span[0]), "oldest": stamp_time(span[-1])}
        rows = await db.fetch(reads.rows, {**(filters or {}), "key": key, **bounds})
        if len(rows) != len(span):  # a row deleted, or one back-filled, since the stamps
            return None
        encoded = members(rows if point is None else list(map(point, rows)))
        cache.put(series, dict(zip(span, encoded, strict=True)))
        found[first : last + 1] = encoded
    more = len(stamps) > page.limit and shown
    # Every row is found now (a missing one returned above).
    data = array(cast(list[bytes], found))
    return EncodedPage(data, len(found), stamp_time(shown[-1]) if more else None)
