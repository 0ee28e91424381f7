"""Pauses in committing, from samples of a growing count (rows in a table, offsets...)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def longest_pause(samples: Sequence[tuple[float, int]], start: float, end: float) -> float:
    """Longest time within ``[start, end]`` during which the count did not grow.

    ``samples`` are ``(time, count)`` in time order. A pause runs from one growth
    (or ``start``) to the next growth (or ``end``): if nothing grew in the window,
    the whole window is the pause.
    """
    grew = [b[0] for a, b in itertools.pairwise(samples) if b[1] > a[1] and start < b[0] <= end]
    marks = [start, *grew, end]
    return max(b - a for a, b in itertools.pairwise(marks))
