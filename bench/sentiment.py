"""How the producer's sentiment labels agree with human labels, next to other scorers.

    .venv/bin/python -m bench.sentiment [--no-write]

Two labelled sets (provenance and licences in tests/fixtures/sentiment/README.md):

* ``financial``: the validation split of the Twitter Financial News sentiment set
  (2,388 finance news headlines as posted on Twitter, labelled bearish / bullish /
  neutral by its authors; MIT). ``t.co`` links are removed before scoring: the RSS
  producer scores titles and summaries, which carry none.
* ``crypto``: the 58 real items of ../shared/fixtures/real/rss, labelled in this repo
  by one person (small; indicative only).

Scorers:

* ``textblob``: the producer's own rule (``flows.producers.news.sentiment`` then
  ``handlers.sentiment_label``): TextBlob polarity mapped to [0, 1], positive above
  0.6 and negative below 0.4 (polarity beyond +-0.2), neutral between.
* ``textblob_sign``: the same polarity with VADER's usual +-0.05 cut-offs, to show
  what the thresholds alone change.
* ``vader``: vaderSentiment's compound score with its authors' +-0.05 cut-offs.
* ``vader_seed``: the compound score mapped to [0, 1] like TextBlob's and labelled by
  the seeds' 0.4 / 0.6 rule, i.e. what VADER would give behind the same thresholds.

Reports accuracy, macro-F1, per-class precision/recall and the confusion matrix
(rows: the label, columns: the scorer) per set and scorer, each scorer's macro-F1
minus TextBlob's with a paired bootstrap 95 % interval, and the scoring cost.
Writes ``bench/results/sentiment.json``; docs/ANALYTICS.md "Sentiment scoring" has
the figures. Pure CPU, well under a minute.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._results import REPO, provenance, report
from flows.producers.news import sentiment
from handlers import SentimentLabel, sentiment_label
from infra.cli import run_program

FIXTURES = REPO / "tests" / "fixtures" / "sentiment"
FINANCIAL = FIXTURES / "twitter_financial_news_valid.csv"
CRYPTO = FIXTURES / "crypto_headlines.jsonl"
RESULT = REPO / "bench" / "results" / "sentiment.json"
LABELS: tuple[SentimentLabel, ...] = ("negative", "neutral", "positive")
TWITTER_LABELS: dict[str, SentimentLabel] = {"0": "negative", "1": "positive", "2": "neutral"}
"""The set's own coding: 0 bearish, 1 bullish, 2 neutral."""
VADER_CUT = 0.05
BOOTSTRAP = 1000
"""Paired resamples for the confidence interval of a scorer's macro-F1 minus the default's."""
_LINK = re.compile(r"https?://t\.co/\S*")
_SPACES = re.compile(r"\s+")

Scorer = Callable[[str], SentimentLabel]


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    label: SentimentLabel


def load_financial(path: Path = FINANCIAL) -> list[Item]:
    """The Twitter Financial News validation split, links removed."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    items = []
    for row in rows:
        text = _SPACES.sub(" ", _LINK.sub(" ", row["text"])).strip()
        items.append(Item(text=text, label=TWITTER_LABELS[row["label"]]))
    return items


def load_crypto(path: Path = CRYPTO) -> list[Item]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            items.append(Item(text=row["title"], label=row["label"]))
    return items


def _by_polarity(value: float, cut: float) -> SentimentLabel:
    if value > cut:
        return "positive"
    if value < -cut:
        return "negative"
    return "neutral"


def textblob_label(text: str) -> SentimentLabel:
    """The producer's label for ``text`` (exactly what ``rawarticle`` carries)."""
    score, _subjectivity = sentiment(text)
    return sentiment_label(score)


def textblob_sign(text: str) -> SentimentLabel:
    score, _subjectivity = sentiment(text)
    return _by_polarity(score * 2 - 1, VADER_CUT)


def vader_scorers() -> dict[str, Scorer]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()

    def vader(text: str) -> SentimentLabel:
        return _by_polarity(analyzer.polarity_scores(text)["compound"], VADER_CUT)

    def vader_seed(text: str) -> SentimentLabel:
        compound = analyzer.polarity_scores(text)["compound"]
        return sentiment_label((compound + 1) / 2)

    return {"vader": vader, "vader_seed": vader_seed}


def scorers() -> dict[str, Scorer]:
    return {"textblob": textblob_label, "textblob_sign": textblob_sign, **vader_scorers()}


def evaluate(
    labels: Sequence[SentimentLabel], predicted: Sequence[SentimentLabel]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures and the confusion matrix (rows: truth)."""
    if len(labels) != len(predicted):
        raise ValueError("labels and predictions differ in length")
    matrix = {t: dict.fromkeys(LABELS, 0) for t in LABELS}
    for truth, guess in zip(labels, predicted, strict=True):
        matrix[truth][guess] += 1
    per_class: dict[str, dict[str, float | int]] = {}
    f1s = []
    for label in LABELS:
        tp = matrix[label][label]
        predicted_n = sum(matrix[t][label] for t in LABELS)
        actual_n = sum(matrix[label].values())
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / actual_n if actual_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": actual_n,
        }
    correct = sum(matrix[label][label] for label in LABELS)
    return {
        "n": len(labels),
        "accuracy": round(correct / len(labels), 4) if labels else 0.0,
        "macro_f1": round(sum(f1s) / len(f1s), 4),
        "per_class": per_class,
        "confusion": matrix,
    }


def macro_f1_gap(
    labels: Sequence[SentimentLabel],
    ours: Sequence[SentimentLabel],
    default: Sequence[SentimentLabel],
    *,
    resamples: int = BOOTSTRAP,
    seed: int = 13,
) -> dict[str, float]:
    """Macro-F1 of ``ours`` minus the default's, with a paired bootstrap 95 % interval."""
    rng = random.Random(seed)
    n = len(labels)
    gaps = []
    for _ in range(resamples):
        pick = [rng.randrange(n) for _ in range(n)]
        truth = [labels[i] for i in pick]
        gap = evaluate(truth, [ours[i] for i in pick])["macro_f1"]
        gaps.append(gap - evaluate(truth, [default[i] for i in pick])["macro_f1"])
    gaps.sort()
    point = evaluate(labels, ours)["macro_f1"] - evaluate(labels, default)["macro_f1"]
    return {
        "difference": round(point, 4),
        "ci95_low": round(gaps[int(0.025 * resamples)], 4),
        "ci95_high": round(gaps[int(0.975 * resamples) - 1], 4),
    }


def run() -> dict[str, Any]:
    sets = {"financial": load_financial(), "crypto": load_crypto()}
    results: dict[str, dict[str, Any]] = {}
    for set_name, items in sets.items():
        truth = [item.label for item in items]
        results[set_name] = {
            "n": len(items),
            "labels": {label: truth.count(label) for label in LABELS},
            "majority_class_accuracy": round(max(truth.count(x) for x in LABELS) / len(truth), 4),
            "scorers": {},
        }
        predictions: dict[str, list[SentimentLabel]] = {}
        for name, scorer in scorers().items():
            start = time.process_time()
            predicted = predictions[name] = [scorer(item.text) for item in items]
            elapsed = time.process_time() - start
            figures = evaluate(truth, predicted)
            figures["cpu_us_per_text"] = round(elapsed / len(items) * 1e6, 1)
            if name != "textblob":
                figures["macro_f1_minus_textblob"] = macro_f1_gap(
                    truth, predicted, predictions["textblob"]
                )
            results[set_name]["scorers"][name] = figures
    return {
        "benchmark": "sentiment labels against human labels",
        "command": "python -m bench.sentiment",
        **provenance(),
        "default_scorer": "textblob",
        "sets": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    report(run(), RESULT, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(run_program("bench.sentiment", main))
