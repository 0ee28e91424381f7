"""Where a price path comes from: the ``source`` label of ticker, trade and alert rows.

Every raw message may carry a ``source``; the rows keep it (``ticker_data.source``...).
The labels say whether the row's event time is live, re-timed or recorded history:

=========================  ================================================================
``kraken`` (the default)   the live exchange feed: event time is the exchange's
``synthetic``              the generated market: event time is the generator's wall clock
``replay:<file>``          a replayed candle file re-timed to the replay clock: event time is
                           when the replay played it (live-looking; its per-hop delays are
                           the pipeline's own)
``history:<file>``         recorded data at its recorded time: imported candles, candles
                           replayed on their original clock, replayed Kraken captures. Its
                           event time may be months old, so it is no measure of latency.
=========================  ================================================================

One label per consistent price path: the alert worker keeps its windows per
``(pair, source)``, so two paths on one pair (a 2026 capture and the synthetic
market, say) are never compared with each other; ``python -m infra.latency`` reports
``replay:`` rows apart and leaves ``history:`` rows out.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from handlers._fields import MAX_SOURCE

Origin: TypeAlias = Literal["live", "replay", "history"]

LIVE_SOURCE = "kraken"
SYNTHETIC_SOURCE = "synthetic"
REPLAY_PREFIX = "replay:"
HISTORY_PREFIX = "history:"


def _label(prefix: str, name: str) -> str:
    return (prefix + name)[:MAX_SOURCE]


def replay_source(name: str) -> str:
    """The label of a path re-timed to the replay clock (``name``: its file's name)."""
    return _label(REPLAY_PREFIX, name)


def history_source(name: str) -> str:
    """The label of a path kept at its recorded time (``name``: its file's name)."""
    return _label(HISTORY_PREFIX, name)


def origin_of(source: str | None) -> Origin:
    """Whether rows with this ``source`` are live, re-timed replay or recorded history."""
    if source is None:
        return "live"
    if source.startswith(HISTORY_PREFIX):
        return "history"
    if source.startswith(REPLAY_PREFIX):
        return "replay"
    return "live"
