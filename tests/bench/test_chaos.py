"""The chaos run: the whole pipeline under every fault type, against a reference run.

``test_chaos_run_ci_size`` is the reduced size CI runs (``python -m bench.chaos
--size ci``): a 100-second recorded market, every worker SIGKILLed once, a Kafka
broker crash and restart, PostgreSQL stopped for 30 s. The full size is
``python -m bench.chaos`` (docs/RELIABILITY.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._chaos_checks import DeadLetters, Digest
from bench._chaos_pipeline import PROGRAMS, Fault, FaultOutcome, fault_schedule
from bench.chaos import RunResult, chaos, compare


def _run(label: str, **changes: object) -> RunResult:
    base: dict[str, object] = {
        "label": label,
        "digests": {"ticker_data": Digest(10, "abc"), "alert_data": Digest(2, "def")},
        "dead_letters": DeadLetters(records=3, distinct=3, by_reason={"rawticker: bad": 3}),
        "alerts": 2,
        "alert_repeats": 0,
        "seconds": 1.0,
        "faults": [FaultOutcome(Fault(1.0, "kill", "api"), 1.0, 2.0)],
        "live_connections": [5, 7],
    }
    base.update(changes)
    return RunResult(**base)  # type: ignore[arg-type]


def test_the_schedule_kills_every_worker_once_then_crashes_both_servers() -> None:
    faults = fault_schedule(100.0)
    kills = [f.target for f in faults if f.kind == "kill"]
    assert sorted(kills) == sorted(PROGRAMS)
    assert [f.kind for f in faults[-2:]] == ["kafka-restart", "postgres-stop"]
    times = [f.at_s for f in faults]
    assert times == sorted(times)
    assert times[0] > 0
    assert times[-1] < 100.0


def test_identical_runs_pass() -> None:
    assert compare(_run("reference", faults=[], live_connections=[9]), _run("faulted"), 1) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"digests": {"ticker_data": Digest(10, "abd"), "alert_data": Digest(2, "def")}},
         "table ticker_data"),
        ({"digests": {"ticker_data": Digest(10, "abc")}}, "table alert_data"),
        ({"dead_letters": DeadLetters(4, 2, {"rawticker: bad": 2})}, "dead letters differ"),
        ({"alert_repeats": 1}, "alerts on the topic twice"),
        ({"faults": []}, "0 of 1 faults injected"),
        ({"live_connections": [12]}, "live client"),
        ({"live_connections": [12, 0]}, "live client"),
    ],
)  # fmt: skip
def test_every_difference_is_reported(changes: dict[str, object], expected: str) -> None:
    problems = compare(_run("reference", faults=[]), _run("faulted", **changes), 1)
    assert len(problems) == 1
    assert expected in problems[0]


def test_a_crash_in_the_reference_run_fails_it() -> None:
    reference = _run("reference", faults=[], restarts={"ingest-rawtrade": 1})
    problems = compare(reference, _run("faulted", restarts={"api": 1}), 1)
    assert problems == ["reference run: workers restarted without a fault: {'ingest-rawtrade': 1}"]


@pytest.mark.integration
@pytest.mark.spark
def test_chaos_run_ci_size(server_dir: Path, shared_fixtures: Path) -> None:
    # shared_fixtures: the input's news feeds are the real saved ones (skips without them).
    result = chaos("ci", server_dir)
    assert result["problems"] == []
    assert result["passed"]
    reference, faulted = result["reference"], result["faulted"]
    injected = [(o["fault"]["kind"], o["fault"]["target"]) for o in faulted["faults"]]
    assert sorted(t for k, t in injected if k == "kill") == sorted(PROGRAMS)
    assert {k for k, _ in injected} == {"kill", "kafka-restart", "postgres-stop"}
    # Every stage took part: market rows, news, alerts, dead letters and Spark's results.
    for table in ("ticker_data", "trade_data", "article_data", "alert_data", "sentiment_data",
                  "prediction_data"):  # fmt: skip
        assert reference["digests"][table]["rows"] > 0, table
    assert reference["dead_letters"]["distinct"] == result["input"]["junk"]
    assert len(faulted["live_connections"]) >= 2
    assert set(faulted["restarts"]) >= set(PROGRAMS)  # supervisord brought each one back
