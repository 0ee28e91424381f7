"""Sentiment of one coin over one window: label and confidence (pure functions).

Per (coin, window), from the scores ``s_i`` in [0, 1] of the ``n`` articles
mentioning the coin (each article counted once):

* ``sentiment_score`` = mean ``mean score``;
* ``sentiment_label`` = the seeds' thresholds on the mean: ``> 0.6`` positive,
  ``< 0.4`` negative, else neutral;
* ``confidence = n / (n + k) * (1 - 2 sigma)`` where ``sigma`` is the population standard
  deviation of the scores and ``k`` the article count at which the count factor
  is 1/2 (default 3).

  - The count factor grows with the evidence: 1 article 0.25, 3 articles 0.5,
    9 articles 0.75, never 1.
  - The agreement factor is 1 when all articles score alike and falls to 0 at the
    largest spread scores in [0, 1] allow (``sigma = 0.5``: half at 0, half at 1).

  So a single article gives at most 0.25, however extreme its score; many
  articles that disagree give little; many that agree approach 1. The confidence
  is about the estimate, not about how positive the news is.
"""

from __future__ import annotations

import math

from handlers import SentimentLabel, sentiment_label

MAX_SCORE_STD = 0.5
"""The largest population standard deviation of values in [0, 1]."""


def label(score: float) -> SentimentLabel:
    """``positive`` above 0.6, ``negative`` below 0.4, else ``neutral`` (the seeds' rule)."""
    return sentiment_label(score)


def confidence(article_count: int, score_std: float, half_count: float = 3.0) -> float:
    """``n / (n + k) * (1 - 2 sigma)``, in [0, 1); see the module docstring."""
    if article_count <= 0:
        return 0.0
    evidence = article_count / (article_count + half_count)
    agreement = 1.0 - min(max(score_std, 0.0), MAX_SCORE_STD) / MAX_SCORE_STD
    return evidence * agreement


def std_from_var(var_pop: float | None) -> float:
    """Population standard deviation from a variance that rounding may leave slightly < 0."""
    if var_pop is None or not math.isfinite(var_pop):
        return 0.0
    return math.sqrt(max(var_pop, 0.0))
