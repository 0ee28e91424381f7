"""Trade sequencing: gap detection on Kraken's ``trade_id``, dedup, and REST gap fills.

Kraken v2 ``trade_id`` is a per-book sequence number, so for each pair the ids we
emit must be consecutive. :class:`TradeSequencer` keeps, per pair, the highest id
sent and the ranges still missing; a trade is emitted only if its id is new or
fills a hole, so the snapshot replayed after every (re)subscribe and the REST fill
that overlaps live data never produce a trade twice. Its state is small and goes
into Bytewax recovery, so the guarantee also holds across restarts (and a gap that
opened while the worker was down is detected on the first trade after it).

:class:`GapFiller` fetches missing trades from Kraken's public REST ``Trades``
endpoint on a background thread; they go through the same parser as WebSocket
frames.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from flows.producers import _metrics as m
from handlers import CoinTable, CryptoVizError, HandlerContext, TradeMessage, parse_kraken_v2

log = logging.getLogger(__name__)

Range = tuple[int, int]
"""Inclusive range of trade ids."""


@dataclass(slots=True)
class PairSequence:
    last_id: int | None = None
    last_ts: float | None = None
    missing: list[Range] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Gap:
    pair: str
    first: int
    last: int
    since_ts: float | None
    """Exchange time of the last trade before the gap (where the REST fetch starts)."""


class TradeSequencer:
    """Per-pair trade_id bookkeeping; its :meth:`snapshot` is Bytewax recovery state."""

    def __init__(
        self, state: Mapping[str, PairSequence] | None = None, max_fill: int = 5000
    ) -> None:
        self._pairs: dict[str, PairSequence] = dict(state or {})
        self._max_fill = max_fill

    def snapshot(self) -> dict[str, PairSequence]:
        return {
            pair: PairSequence(seq.last_id, seq.last_ts, list(seq.missing))
            for pair, seq in self._pairs.items()
        }

    def retain(self, pairs: Collection[str]) -> list[str]:
        """Forget the sequences of every pair but ``pairs``; returns the pairs forgotten.

        For pairs no longer tracked: their trades stop, so the next trade of a pair
        tracked again must start a new sequence, not open a gap over the time it was not.
        """
        gone = [pair for pair in self._pairs if pair not in pairs]
        for pair in gone:
            del self._pairs[pair]
        return gone

    def open_gaps(self) -> list[Gap]:
        """Every hole still missing (to re-request fills after a restart)."""
        return [
            Gap(pair, first, last, seq.last_ts)
            for pair, seq in self._pairs.items()
            for first, last in seq.missing
        ]

    def accept(self, trade: TradeMessage) -> tuple[bool, Gap | None]:
        """Whether to emit ``trade``, and the gap its id revealed (if any)."""
        tid = trade.trade_id
        if tid is None:
            return True, None  # v1 trades carry no id: nothing to sequence
        seq = self._pairs.setdefault(trade.pair, PairSequence())
        if seq.last_id is None:
            seq.last_id, seq.last_ts = tid, trade.timestamp
            return True, None
        if tid <= seq.last_id:
            if self._take(seq, tid):
                return True, None
            m.KRAKEN_DUPLICATES.labels(trade.pair).inc()
            return False, None
        gap: Gap | None = None
        if tid > seq.last_id + 1:
            first, last = seq.last_id + 1, tid - 1
            size = last - first + 1
            m.KRAKEN_GAPS.labels(trade.pair).inc()
            m.KRAKEN_GAP_MISSING.labels(trade.pair).inc(size)
            if size > self._max_fill:
                log.error(
                    "%s: trade_id jumped %d -> %d; only the last %d of %d missing trades "
                    "will be fetched",
                    trade.pair, seq.last_id, tid, self._max_fill, size,
                )  # fmt: skip
                m.KRAKEN_GAP_LOST.labels(trade.pair).inc(size - self._max_fill)
                first = last - self._max_fill + 1
            else:
                log.warning(
                    "%s: trade_id jumped %d -> %d (%d missing), filling over REST",
                    trade.pair, seq.last_id, tid, size,
                )  # fmt: skip
            seq.missing.append((first, last))
            gap = Gap(trade.pair, first, last, seq.last_ts)
        seq.last_id, seq.last_ts = tid, trade.timestamp
        return True, gap

    def fill(self, trade: TradeMessage) -> bool:
        """Whether a trade fetched for a gap is still missing (it is then emitted)."""
        seq = self._pairs.get(trade.pair)
        if seq is None or trade.trade_id is None or not self._take(seq, trade.trade_id):
            return False
        m.KRAKEN_GAP_FILLED.labels(trade.pair).inc()
        return True

    def abandon(self, gap: Gap) -> int:
        """Give up on what is still missing of ``gap``; returns how many trades that is."""
        seq = self._pairs.get(gap.pair)
        if seq is None:
            return 0
        lost = 0
        kept: list[Range] = []
        for first, last in seq.missing:
            lo, hi = max(first, gap.first), min(last, gap.last)
            if lo > hi:
                kept.append((first, last))
                continue
            lost += hi - lo + 1
            if first < lo:
                kept.append((first, lo - 1))
            if hi < last:
                kept.append((hi + 1, last))
        seq.missing = kept
        if lost:
            m.KRAKEN_GAP_LOST.labels(gap.pair).inc(lost)
        return lost

    def still_missing(self, gap: Gap) -> int:
        seq = self._pairs.get(gap.pair)
        if seq is None:
            return 0
        return sum(
            max(0, min(last, gap.last) - max(first, gap.first) + 1) for first, last in seq.missing
        )

    @staticmethod
    def _take(seq: PairSequence, tid: int) -> bool:
        for index, (first, last) in enumerate(seq.missing):
            if first <= tid <= last:
                pieces = [(first, tid - 1)] if first < tid else []
                if tid < last:
                    pieces.append((tid + 1, last))
                seq.missing[index : index + 1] = pieces
                return True
        return False


# -- REST gap fill -------------------------------------------------------------------------

_REST_DECODER = msgspec.json.Decoder(float_hook=Decimal)
_SIDES = {"b": "buy", "s": "sell"}
_ORD_TYPES = {"l": "limit", "m": "market"}


def rest_pair(pair: str, asset_names: Mapping[str, str]) -> str:
    """``BTC/USD`` -> ``XBTUSD`` (the REST API's pair names)."""
    base, _, quote = pair.partition("/")
    return asset_names.get(base, base) + asset_names.get(quote, quote)


class RestError(CryptoVizError):
    """Kraken's REST ``Trades`` endpoint failed or answered something unusable."""


def fetch_rest_trades(
    url: str, pair: str, since: int, timeout: float, asset_names: Mapping[str, str]
) -> tuple[list[list[object]], int | None]:
    """One page of ``/public/Trades``: the trade rows and the ``last`` cursor."""
    query = urllib.parse.urlencode({"pair": rest_pair(pair, asset_names), "since": since})
    if not url.startswith(("http://", "https://")):
        raise RestError(f"Kraken REST URL {url!r} must be http(s)")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        f"{url}?{query}", headers={"User-Agent": "CryptoViz/0.1"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(50_000_000)
    except (urllib.error.URLError, OSError) as exc:
        raise RestError(f"GET {url} for {pair}: {exc}") from exc
    try:
        payload = _REST_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise RestError(f"GET {url} for {pair}: not JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise RestError(f"GET {url} for {pair}: unexpected response")
    errors = payload.get("error")
    if errors:
        raise RestError(f"GET {url} for {pair}: Kraken error {errors}")
    result = payload.get("result")
    if not isinstance(result, dict):
        raise RestError(f"GET {url} for {pair}: no 'result'")
    rows: list[list[object]] = []
    for key, value in result.items():
        if key != "last" and isinstance(value, list):
            rows = [row for row in value if isinstance(row, list)]
            break
    last = result.get("last")
    cursor = int(last) if isinstance(last, str | int) and str(last).isdigit() else None
    return rows, cursor


def rest_rows_to_trades(
    rows: list[list[object]], pair: str, coins: CoinTable, now: datetime
) -> list[TradeMessage]:
    """REST rows ``[price, volume, time, side, ordType, misc, trade_id]`` as trade messages.

    The rows are rewritten as one v2 ``trade`` frame so they go through exactly the
    parser the WebSocket frames go through (decimals exact, same validation).
    """
    data = []
    for row in rows:
        if len(row) < 7:
            continue
        data.append(
            {
                "symbol": pair,
                "price": row[0],
                "qty": row[1],
                "timestamp": row[2],
                "side": _SIDES.get(str(row[3]), row[3]),
                "ord_type": _ORD_TYPES.get(str(row[4]), row[4]),
                "trade_id": row[6],
            }
        )
    if not data:
        return []
    frame = msgspec.json.encode({"channel": "trade", "type": "update", "data": data})
    event = parse_kraken_v2(frame, HandlerContext(coins=coins, now=now))
    for rejection in event.rejections:
        log.warning("%s: REST trade refused by the parser: %s", pair, rejection.reason)
    return [msg for msg in event.messages if isinstance(msg, TradeMessage)]


@dataclass(frozen=True, slots=True)
class FillResult:
    gap: Gap
    trades: list[TradeMessage]
    error: str | None = None


FetchPage = Callable[[str, int], tuple[list[list[object]], int | None]]


class GapFiller:
    """Fetches missing trades on a daemon thread; results are collected with :meth:`drain`."""

    def __init__(
        self,
        fetch_page: FetchPage,
        coins: CoinTable,
        *,
        attempts: int,
        retry_s: float,
        max_pages: int = 20,
    ) -> None:
        self._fetch_page = fetch_page
        self._coins = coins
        self._attempts = attempts
        self._retry_s = retry_s
        self._max_pages = max_pages
        self._jobs: queue.Queue[Gap | None] = queue.Queue()
        self._results: queue.Queue[FillResult] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kraken-gap-fill", daemon=True)
        self._thread.start()

    def request(self, gap: Gap) -> None:
        self._jobs.put(gap)

    def drain(self) -> list[FillResult]:
        out: list[FillResult] = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        self._stop.set()
        self._jobs.put(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            gap = self._jobs.get()
            if gap is None:
                return
            self._results.put(self._fill(gap))

    def _fill(self, gap: Gap) -> FillResult:
        wanted = gap.last - gap.first + 1
        found: dict[int, TradeMessage] = {}
        error = "stopped"
        for attempt in range(self._attempts):
            # Retry with backoff: REST can lag the WebSocket by a moment, and a
            # transient HTTP error must not cost trades.
            if attempt and self._stop.wait(self._retry_s * 2 ** (attempt - 1)):
                break
            try:
                found.update((t.trade_id, t) for t in self._fetch(gap) if t.trade_id is not None)
            except RestError as exc:
                error = str(exc)
                log.warning("gap fill %s %d..%d: %s", gap.pair, gap.first, gap.last, error)
                continue
            if len(found) >= wanted:
                return FillResult(gap, [found[k] for k in sorted(found)])
            error = f"REST returned {len(found)} of {wanted} missing trades"
        return FillResult(gap, [found[k] for k in sorted(found)], error)

    def _fetch(self, gap: Gap) -> list[TradeMessage]:
        # ``since`` is a time; start one second before the last trade we had, so the
        # first page surely covers the first missing id (extra rows are dropped).
        since = int(gap.since_ts) - 1 if gap.since_ts is not None else 0
        found: list[TradeMessage] = []
        for _ in range(self._max_pages):
            rows, cursor = self._fetch_page(gap.pair, since)
            trades = rest_rows_to_trades(rows, gap.pair, self._coins, datetime.now(UTC))
            ids = [t.trade_id for t in trades if t.trade_id is not None]
            found += [
                t for t in trades if t.trade_id is not None and gap.first <= t.trade_id <= gap.last
            ]
            if not ids or max(ids) >= gap.last or cursor is None or cursor <= since:
                break
            since = cursor
        return found


def make_rest_fetcher(url: str, timeout: float, asset_names: Mapping[str, str]) -> FetchPage:
    def fetch(pair: str, since: int) -> tuple[list[list[object]], int | None]:
        return fetch_rest_trades(url, pair, since, timeout, asset_names)

    return fetch
