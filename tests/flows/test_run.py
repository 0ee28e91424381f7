"""``python -m flows.run``: what the worker process sets up before Bytewax runs the flow."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from flows import run


def test_the_collector_is_set_for_a_stream_before_the_flow_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The collector stops walking what start-up made and runs less often
    (``GC_THRESHOLDS``); the flow itself is handed to Bytewax unchanged."""
    seen: dict[str, Any] = {}

    def cli_main(flow: object, **options: object) -> None:
        seen["frozen"], seen["thresholds"] = gc.get_freeze_count(), gc.get_threshold()
        seen["flow"], seen["options"] = flow, options

    monkeypatch.setattr(run, "cli_main", cli_main)
    thresholds = gc.get_threshold()
    monkeypatch.setenv("CRYPTOVIZ_STATE_DIR", str(tmp_path))
    # Nothing connects before cli_main: addresses that answer nothing will do.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    try:
        status = run.main(["ingest-rawticker", "--recovery-dir", str(tmp_path / "recovery")])
    finally:
        gc.unfreeze()  # (this test process goes on allocating and freeing)
        gc.set_threshold(*thresholds)
    assert status == 0
    assert seen["frozen"] > 0
    assert seen["thresholds"] == run.GC_THRESHOLDS
    assert type(seen["flow"]).__name__ == "Dataflow"
    assert seen["options"]["recovery_config"] is not None
