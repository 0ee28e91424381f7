"""Commit pauses from samples of a growing count."""

from __future__ import annotations

from bench._commits import longest_pause

SAMPLES = [(0.0, 0), (1.0, 5), (2.0, 5), (3.0, 5), (4.0, 9), (5.0, 12), (6.0, 12)]


def test_the_longest_gap_between_growths_counts() -> None:
    assert longest_pause(SAMPLES, 0.0, 5.0) == 3.0  # grew at 1.0, then only at 4.0


def test_the_window_edges_bound_the_pause() -> None:
    assert longest_pause(SAMPLES, 4.5, 6.0) == 1.0  # grew at 5.0: 0.5 before, 1.0 after
    assert longest_pause(SAMPLES, 1.5, 3.5) == 2.0  # no growth at all: the whole window
