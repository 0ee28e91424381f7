"""Price alerts: a stateful Bytewax step per price path over the ``rawticker`` stream.

A price path is a pair and the ``source`` of its ticks (:func:`path_key`;
``handlers._origin``): the live feed, the synthetic market, a replayed capture and
a replayed candle file are separate paths even on one pair, so a move is only ever
measured between two prices of one path (a recorded ADA/USD at 0.10 and a synthetic
one at 0.45 are no +348 % move). An alert says its path's ``source``.

Reference price: the price at the start of a rolling window (default 60 s), i.e. the
last tick at or before ``t - window`` (the oldest tick in the window while there is
less history). When ``|last / reference - 1|`` reaches the pair's threshold
(default 0.5 %), one alert fires for that crossing; while the move stays beyond the
threshold nothing more fires (the crossing is "active"), and once it falls back
below, the next crossing may fire again, but not within ``cooldown_s`` of the
previous alert in the same direction.

Times are the tickers' own (exchange) times, not the wall clock, so a replay gives
the same alerts as the live run, and alert keys ``(pair, timestamp, alert_type)`` are
deterministic. The per-path state is Bytewax recovery state: a restarted worker
continues the same windows and excursions, so it does not forget a crossing in
progress; alerts it raised after its last snapshot come round again, and the keys
already on the topic (``already_sent``) keep them from being published twice.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Set
from dataclasses import dataclass, field
from decimal import Context, Decimal

from flows.producers import _metrics as m
from flows.producers.alert_log import AlertKey
from flows.producers.settings import AlertSettings
from handlers import LIVE_SOURCE, AlertMessage, AlertType, TickerRecord, epoch_seconds

log = logging.getLogger(__name__)

_PCT = Decimal("0.0001")
_WIDE = Context(prec=60)


def path_key(ticker: TickerRecord) -> str:
    """The key of a ticker's price path: its pair and source."""
    return f"{ticker.pair}|{ticker.source}"


@dataclass(slots=True)
class AlertState:
    """Per-path state (pickled into Bytewax recovery snapshots)."""

    ticks: deque[tuple[float, Decimal]] = field(default_factory=deque)
    """(time, price), oldest first; the first one may lie before the window (the anchor)."""
    active: AlertType | None = None
    """AlertType of the excursion beyond the threshold currently in progress."""
    last_fired: dict[str, float] = field(default_factory=dict)
    """Time of the last alert per direction (cool-down)."""


class AlertDetector:
    """``stateful_map`` mapper: (state, ticker) -> (state, alert or None)."""

    def __init__(self, settings: AlertSettings, already_sent: Set[AlertKey] = frozenset()) -> None:
        self._s = settings
        self._sent = already_sent
        """Alerts a previous run of this worker published (:mod:`flows.producers.alert_log`)."""

    def __call__(
        self, state: AlertState | None, ticker: TickerRecord
    ) -> tuple[AlertState, AlertMessage | None]:
        state = state or AlertState()
        now = epoch_seconds(ticker.time)
        ticks = state.ticks
        if ticks and now <= ticks[-1][0]:
            return state, None  # late or repeated tick: windows only move forward
        ticks.append((now, ticker.last))
        start = now - self._s.window_s
        # Keep exactly one tick at or before the window start: the reference.
        while len(ticks) >= 2 and ticks[1][0] <= start:
            ticks.popleft()
        reference = ticks[0][1]
        change = ((ticker.last - reference) / reference * 100).quantize(_PCT, context=_WIDE)
        threshold = self._s.threshold_for(ticker.pair)
        if change.copy_abs() < threshold:
            state.active = None
            return state, None
        direction: AlertType = "up" if change > 0 else "down"
        if state.active == direction:
            return state, None
        state.active = direction
        previous = state.last_fired.get(direction)
        if previous is not None and now - previous < self._s.cooldown_s:
            m.ALERTS_SUPPRESSED.labels(ticker.pair).inc()
            log.info("alert %s %s %s%% suppressed (cool-down)", ticker.pair, direction, change)
            return state, None
        state.last_fired[direction] = now
        if (ticker.pair, now, direction) in self._sent:
            # Re-raised after a restart from an older snapshot: it is already on the topic.
            m.ALERTS_ALREADY_SENT.inc()
            log.info("alert %s %s at %s already published: not sent again", ticker.pair,
                     direction, now)  # fmt: skip
            return state, None
        m.ALERTS.labels(ticker.pair, direction).inc()
        alert = AlertMessage(
            pair=ticker.pair,
            last=ticker.last,
            change=change,
            threshold=threshold,
            timestamp=now,
            alert_type=direction,
            reference_price=reference,
            window_s=self._s.window_s,
            receive_ts=None if ticker.receive_time is None else epoch_seconds(ticker.receive_time),
            source=None if ticker.source == LIVE_SOURCE else ticker.source,
        )
        log.info("alert %s %s %s%% (reference %s)", ticker.pair, direction, change, reference)
        return state, alert
