"""What the producers counted and logged, read the way an operator reads it.

The sources keep no statistics of their own (they would grow for the life of the
process): tests read the Prometheus counters a worker serves, as deltas over the
test (the registry is the process's, shared by every test), and the log records
for what a counter cannot say (the order of events, an error's text).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import REGISTRY

Sample = tuple[str, tuple[tuple[str, str], ...]]


def _samples() -> dict[Sample, float]:
    return {
        (s.name, tuple(s.labels.items())): s.value
        for family in REGISTRY.collect()
        for s in family.samples
    }


class Counters:
    """The process's Prometheus counters, as deltas from when this object was made."""

    def __init__(self) -> None:
        self._start = _samples()

    def deltas(self, name: str) -> dict[tuple[str, ...], float]:
        """Non-zero growth of each series of ``name``, keyed by its label values (in the
        order the metric declares its labels)."""
        out: dict[tuple[str, ...], float] = {}
        for (sample, labels), value in _samples().items():
            grown = value - self._start.get((sample, labels), 0.0)
            if sample == name and grown:
                out[tuple(v for _k, v in labels)] = grown
        return out

    def __call__(self, name: str, **labels: str) -> float:
        """Growth of ``name`` summed over the series whose labels include ``labels``."""
        now = _samples()
        wanted = set(labels.items())
        return sum(
            value - self._start.get((sample, series), 0.0)
            for (sample, series), value in now.items()
            if sample == name and wanted <= set(series)
        )


def logged(records: Iterable[logging.LogRecord], prefix: str) -> list[tuple[object, ...]]:
    """Arguments of the records whose message format starts with ``prefix``, in order."""
    return [
        tuple(record.args) if isinstance(record.args, tuple) else ()
        for record in records
        if isinstance(record.msg, str) and record.msg.startswith(prefix)
    ]
