"""Coin-tag quality on the labelled headline set: precision and recall, overall and per coin.

    .venv/bin/python -m bench.tags [--set FILE.jsonl ...] [--coins infra/coins.toml]
                                   [--no-write]

Tags every headline of the set (by default every ``tests/fixtures/tags/*.jsonl``: the
first set and the blind batches) with ``CoinTable.mentions`` (the one tagger the RSS
producer, the article handler and Spark use), on ``title + "\n" + summary`` as they
do, and compares with the hand labels over (headline, coin) pairs for the coins of
the coin table: micro-averaged precision, recall and F1, the same per file, per
origin, per coin and per kind of headline, every headline still tagged wrong, and
the CPU cost per headline (best of several passes over the set, so one run gives
both figures). Writes ``bench/results/tags.json`` (see docs/ANALYTICS.md, "Coin
tags"). Pure CPU, a few seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._results import REPO, provenance, report
from handlers import CoinTable
from infra.cli import run_program

SET_DIR = REPO / "tests" / "fixtures" / "tags"
HEADLINES = SET_DIR / "headlines.jsonl"
"""The first set (real feed items, samples, hard cases); the blind batches sit next to it."""
COINS = REPO / "infra" / "coins.toml"
COST_PASSES = 7
"""Timed passes over the whole set; the fastest is reported (the least disturbed by others)."""
RESULT = REPO / "bench" / "results" / "tags.json"
TARGETS = {"precision": 0.98, "recall": 0.95}


@dataclass(frozen=True, slots=True)
class Headline:
    title: str
    coins: tuple[str, ...]
    kind: str
    origin: str
    summary: str = ""

    @property
    def text(self) -> str:
        """What the components tag: the title, and the summary on a line of its own."""
        return f"{self.title}\n{self.summary}" if self.summary else self.title


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def figures(self) -> dict[str, float | int]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass(slots=True)
class Score:
    micro: Counts = field(default_factory=Counts)
    per_coin: dict[str, Counts] = field(default_factory=dict)
    per_kind: dict[str, Counts] = field(default_factory=dict)
    per_origin: dict[str, Counts] = field(default_factory=dict)
    wrong: list[dict[str, Any]] = field(default_factory=list)


def set_files() -> list[Path]:
    """Every labelled file of the set: the first set, then the blind batches in order."""
    return [HEADLINES, *sorted(p for p in SET_DIR.glob("*.jsonl") if p != HEADLINES)]


def load_set(paths: Sequence[Path] | None = None) -> list[Headline]:
    """All headlines of ``paths`` (default: :func:`set_files`)."""
    return [h for path in (paths or set_files()) for h in load_headlines(path)]


def load_headlines(path: Path = HEADLINES) -> list[Headline]:
    """One labelled file (JSON lines: ``title``, ``coins``, ``kind``, ``origin``, ...)."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("title"), str) or not isinstance(row.get("coins"), list):
            raise ValueError(f"{path}:{number}: needs a title and a coins list")
        out.append(
            Headline(
                title=row["title"],
                coins=tuple(row["coins"]),
                kind=str(row.get("kind", "plain")),
                origin=str(row.get("origin", "?")),
                summary=str(row.get("summary") or ""),
            )
        )
    return out


def load_table(path: Path = COINS) -> CoinTable:
    with path.open("rb") as fh:
        return CoinTable.from_mapping(tomllib.load(fh))


def score(
    tagger: Callable[[str], Iterable[str]], headlines: Sequence[Headline], coins: Iterable[str]
) -> Score:
    """Compare ``tagger`` with the labels over (headline, coin) pairs of ``coins``."""
    universe = set(coins)
    result = Score()
    for symbol in sorted(universe):
        result.per_coin[symbol] = Counts()
    for item in headlines:
        unknown = set(item.coins) - universe
        if unknown:
            raise ValueError(f"{item.title!r} is labelled with coins not in the table: {unknown}")
        gold = set(item.coins)
        got = set(tagger(item.text)) & universe
        counts = Counts()
        for symbol in gold | got:
            one = Counts(
                tp=int(symbol in gold and symbol in got),
                fp=int(symbol in got and symbol not in gold),
                fn=int(symbol in gold and symbol not in got),
            )
            result.per_coin[symbol].add(one)
            counts.add(one)
        result.micro.add(counts)
        result.per_kind.setdefault(item.kind, Counts()).add(counts)
        result.per_origin.setdefault(item.origin, Counts()).add(counts)
        if gold != got:
            result.wrong.append(
                {
                    "title": item.title,
                    **({"summary": item.summary} if item.summary else {}),
                    "origin": item.origin,
                    "kind": item.kind,
                    "labelled": sorted(gold),
                    "tagged": sorted(got),
                }
            )
    return result


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def cost_per_headline(tagger: Callable[[str], object], texts: Sequence[str]) -> float:
    """Seconds of CPU per text: the fastest of :data:`COST_PASSES` passes over ``texts``."""
    best = float("inf")
    for _ in range(COST_PASSES):
        start = time.process_time()
        for text in texts:
            tagger(text)
        best = min(best, time.process_time() - start)
    return best / max(1, len(texts))


def run(headline_paths: Sequence[Path], coins_path: Path) -> dict[str, Any]:
    table = load_table(coins_path)
    symbols = [coin.symbol for coin in table.coins]
    per_file = {path: load_headlines(path) for path in headline_paths}
    headlines = [h for items in per_file.values() for h in items]
    result = score(table.mentions, headlines, symbols)
    for wrong in result.wrong:
        text = f"{wrong['title']}\n{wrong['summary']}" if "summary" in wrong else wrong["title"]
        wrong["why"] = [
            f"{m.text}: {'counted' if m.counted else 'not counted'} ({m.reason})"
            for m in table.tagger.explain(text)
        ]
    origins = Counter(h.origin for h in headlines)
    micro = result.micro.figures()
    cost = cost_per_headline(table.mentions, [h.text for h in headlines])
    return {
        "benchmark": "coin tags on the labelled headline set",
        "command": "python -m bench.tags",
        **provenance(),
        "set": [_shown(path) for path in headline_paths],
        "coins_file": _shown(coins_path),
        "headlines": len(headlines),
        "origins": dict(sorted(origins.items())),
        "labelled_pairs": sum(len(h.coins) for h in headlines),
        "targets": TARGETS,
        "meets_targets": all(micro[k] >= v for k, v in TARGETS.items()),
        "micro": micro,
        "per_file": {
            _shown(path): score(table.mentions, items, symbols).micro.figures()
            for path, items in per_file.items()
        },
        "per_origin": {k: v.figures() for k, v in sorted(result.per_origin.items())},
        "per_coin": {k: v.figures() for k, v in result.per_coin.items()},
        "per_kind": {k: v.figures() for k, v in sorted(result.per_kind.items())},
        "cost_us_per_headline": round(cost * 1e6, 1),
        "cost_method": (
            f"CPU time (time.process_time) of CoinTable.mentions over the {len(headlines)}"
            f" headlines, fastest of {COST_PASSES} passes"
        ),
        "wrong": result.wrong,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set",
        type=Path,
        action="append",
        help="labelled JSON lines (repeatable; default: every tests/fixtures/tags/*.jsonl)",
    )
    parser.add_argument("--coins", type=Path, default=COINS, help="coin table TOML")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.set] if args.set else set_files()
    report(run(paths, args.coins.resolve()), RESULT, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(run_program("bench.tags", main))
