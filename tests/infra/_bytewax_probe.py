"""A real ingestion flow run the way ``python -m flows.run`` runs it, without servers.

    python -m tests.infra._bytewax_probe RECOVERY_DIR

The rawticker flow of :func:`flows.ingest.build_ingest_flow`, fed by an endless
in-memory source (valid and invalid tickers, so both the database and the
dead-letter outputs see items) with testing sinks instead of PostgreSQL and
Kafka, under Bytewax recovery like the real workers. Started with
``BYTEWAX_DATAFLOW_API_ENABLED`` it serves the same ``/metrics`` endpoint that
Prometheus scrapes in infra/docker-compose.yml; :mod:`tests.infra._metric_catalog`
reads the metrics from there. It runs until it is terminated.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from bytewax.testing import TestingSink

from flows._parse import SourceMsg
from flows.ingest import build_ingest_flow
from infra.settings import load_settings

TOPIC = "rawticker"


class _Ticks(StatefulSourcePartition[SourceMsg, int]):
    """One partition of tickers, resumable like a Kafka partition (state: the offset)."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def snapshot(self) -> int:
        return self._offset

    def next_batch(self) -> list[SourceMsg]:
        time.sleep(0.05)
        self._offset += 2
        now = time.time()
        good = (
            f'{{"pair":"BTC/USD","last":{95000 + self._offset % 100},'
            f'"bid":94999.5,"ask":95000.5,"timestamp":{now:.6f}}}'
        ).encode()
        return [
            KafkaSourceMessage(None, good, topic=TOPIC, partition=0, offset=self._offset),
            KafkaSourceMessage(
                None, b"not json", topic=TOPIC, partition=0, offset=self._offset + 1
            ),
        ]


class _EndlessTicks(FixedPartitionedSource[SourceMsg, int]):
    def list_parts(self) -> list[str]:
        return ["0"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Ticks:
        return _Ticks(resume_state or 0)


def main(argv: list[str]) -> int:
    recovery_dir = Path(argv[0])
    recovery_dir.mkdir(parents=True, exist_ok=True)
    init_db_dir(recovery_dir, 1)
    rows: list[Any] = []
    letters: list[Any] = []
    flow = build_ingest_flow(
        TOPIC,
        load_settings(),
        source=_EndlessTicks(),
        db_sink=TestingSink(rows),
        dlq_sink=TestingSink(letters),
    )
    cli_main(
        flow,
        workers_per_process=1,
        process_id=None,
        addresses=None,
        epoch_interval=timedelta(seconds=1),
        recovery_config=RecoveryConfig(str(recovery_dir), backup_interval=timedelta(0)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
