"""The soak run's figures from its samples (:func:`summarize`), and their printout."""

from __future__ import annotations

import statistics
from typing import Any

from bench._soak_plan import Options

FLAT_SHARE, FLAT_MB = 0.05, 16.0
KEEP_UP_SHARE = 0.05
"""Ingestion keeps up while the lag grows by less than this share of the rate (per s)."""


def _at(samples: list[dict[str, Any]], t: float) -> dict[str, Any]:
    return min(samples, key=lambda s: abs(s["t"] - t))


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else None


def summarize(
    opts: Options,
    samples: list[dict[str, Any]],
    stopped_at: float,
    caught_up_at: float | None,
    final: dict[str, Any],
) -> dict[str, Any]:
    load = [s for s in samples if s["phase"] == "load"]
    warm = [s for s in load if s["t"] >= opts.warmup_s] or load[-1:]
    first, middle, end = warm[0], _at(warm, (warm[0]["t"] + load[-1]["t"]) / 2), load[-1]
    market = final["market_topics"]

    def produced(s: dict[str, Any]) -> int:
        return int(sum(s["produced"][t] for t in market))

    def ingested(s: dict[str, Any]) -> int:
        return int(s["rows"].get("rawticker", 0) + s["rows"].get("rawtrade", 0))

    span = max(end["t"] - first["t"], 1e-9)
    memory: dict[str, Any] = {}
    for name in end.get("memory_mb", {}):
        series = [s["memory_mb"][name] for s in load if name in s.get("memory_mb", {})]
        start_mb = first["memory_mb"].get(name)
        mid_mb, end_mb = middle["memory_mb"].get(name), end["memory_mb"][name]
        flat = None if mid_mb is None else end_mb - mid_mb <= max(FLAT_SHARE * mid_mb, FLAT_MB)
        memory[name] = {
            "start": start_mb,
            "middle": mid_mb,
            "end": end_mb,
            "peak": max(series),
            "flat": flat,
        }
    workers = list(end["lag"])
    lag = {
        name: {
            "max": max(s["lag"].get(name, 0) for s in samples),
            "final": samples[-1]["lag"].get(name),
        }
        for name in workers
    }
    half = [s for s in load if s["t"] >= opts.load_s / 2]
    growth = _slope([(s["t"], sum(s["lag"].values())) for s in half])
    errors = (
        sum(v["error_lines"] + v["tracebacks"] for v in final["logs"].values())
        + sum(final["restarts"].values())
        + final["dead_letters"]
        + final["api"].get("errors", 0)
    )
    return {
        "rates": {
            "target_msgs_per_s": opts.rate,
            "produced_msgs_per_s": round((produced(end) - produced(first)) / span),
            "ingested_rows_per_s": round((ingested(end) - ingested(first)) / span),
            "window_s": [first["t"], end["t"]],
        },
        "keeps_up": growth is not None and growth < KEEP_UP_SHARE * opts.rate,
        "lag_growth_msgs_per_s_second_half": None if growth is None else round(growth, 1),
        "lag": lag,
        "catch_up_s": None if caught_up_at is None else round(caught_up_at - stopped_at, 1),
        "memory_mb": memory,
        "memory_flat": all(m["flat"] is not False for m in memory.values()),
        "errors_total": errors,
    }


def print_summary(result: dict[str, Any]) -> None:
    s, f = result["summary"], result["final"]
    r = s["rates"]
    print("\n== soak summary ==")
    print(
        f"load {result['options']['minutes']} min at {r['target_msgs_per_s']:,.0f} msgs/s "
        f"target: produced {r['produced_msgs_per_s']:,}/s, ingested {r['ingested_rows_per_s']:,}"
        f" rows/s (t={r['window_s'][0]:.0f}-{r['window_s'][1]:.0f} s)"
    )
    for table, n in f["rows"].items():
        print(f"  {table}: {n:,} rows for {f['produced'][table]:,} messages produced")
    print(
        f"keeps up: {s['keeps_up']} (lag growth {s['lag_growth_msgs_per_s_second_half']}/s); "
        f"catch-up after stop: {s['catch_up_s']} s"
    )
    for name, lag in s["lag"].items():
        print(f"  lag {name}: max {lag['max']:,}, final {lag['final']}")
    print("memory MB (start / middle / end / peak, flat):")
    for name, m in s["memory_mb"].items():
        print(f"  {name:24} {m['start']} / {m['middle']} / {m['end']} / {m['peak']}  {m['flat']}")
    api = f["api"]
    print(
        f"API {api.get('rps')} req/s of {api.get('target_rps')}: p50 {api.get('p50_ms')} ms, "
        f"p95 {api.get('p95_ms')} ms, p99 {api.get('p99_ms')} ms, errors {api.get('errors')}"
    )
    logs = {n: v["error_lines"] + v["tracebacks"] for n, v in f["logs"].items()}
    print(
        f"errors: total {s['errors_total']}; dead letters {f['dead_letters']}; restarts "
        f"{dict(f['restarts'])}; log errors {logs}"
    )
