"""What the alert worker already published: the tail of ``rawalert``, read at start-up.

The alert worker is at-least-once like every Bytewax flow: killed between
publishing an alert and committing the epoch's snapshot, it restarts from the
previous snapshot, re-reads the same tickers and would raise the same alert again.
Alert keys ``(pair, timestamp, alert_type)`` are deterministic (ticker times, not
the wall clock), so before the flow starts it reads the newest ``per_partition``
alerts of every partition and :class:`~flows.producers.alerts.AlertDetector` treats
those keys as already fired: it updates its state as if it had fired them but
publishes nothing. An epoch (``--snapshot-s``, 5 s) holds far fewer alerts than
``per_partition``, so every alert a crash could repeat is in that tail.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec

from flows._consumer import read_to_end

log = logging.getLogger(__name__)

AlertKey = tuple[str, float, str]
"""(pair, timestamp in epoch seconds, alert_type): the ``alert_data`` primary key."""


class _Key(msgspec.Struct):
    pair: str
    timestamp: float
    alert_type: str


_DECODER = msgspec.json.Decoder(_Key)


def alert_key(value: bytes | None) -> AlertKey | None:
    """The key of an alert message; ``None`` for anything else (not ours to judge: the
    ingestion worker dead-letters it)."""
    if value is None:
        return None
    try:
        key = _DECODER.decode(value)
    except msgspec.DecodeError:
        return None
    return key.pair, key.timestamp, key.alert_type


def alert_keys(values: Iterable[bytes | None]) -> set[AlertKey]:
    """Keys of the alert messages among ``values``; anything unreadable is skipped."""
    return {key for key in map(alert_key, values) if key is not None}


def published_alert_keys(
    bootstrap: str, topic: str, per_partition: int = 10_000, timeout_s: float = 30.0
) -> set[AlertKey]:
    """Keys of the newest ``per_partition`` messages of each partition of ``topic``."""
    tail = read_to_end(bootstrap, topic, per_partition=per_partition,
                       group="cryptoviz-alert-log", timeout_s=timeout_s)  # fmt: skip
    keys = alert_keys(msg.value() for msg in tail)
    log.info("alerts: %d alerts already on %s will not be sent again", len(keys), topic)
    return keys
