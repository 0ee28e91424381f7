"""The quix-streams peer: a Quix Streams application with its PostgreSQL sink.

Runs in its own virtualenv (``.venv/bench``, the ``bench`` dependency group of
pyproject.toml), because quixstreams pins an older confluent-kafka than the
project's. Started by ``bench/peers.py`` as::

    .venv/bench/bin/python bench/_peers_quix.py --broker HOST:PORT --topic T \\
        --group G --database-url URL --state-dir DIR
    .venv/bench/bin/python bench/_peers_quix.py --versions

Configured as the sink's documentation describes: JSON values, one ``apply`` that
maps a message to a dict keyed by column name, and ``PostgreSQLSink`` upserting
on the table's primary key. ``include_metadata=False`` and
``schema_auto_update=False`` because the table exists with its own columns (the
metadata would add ``__key`` and overwrite ``timestamp`` with the Kafka time).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from psycopg2.extensions import parse_dsn
from quixstreams import Application
from quixstreams.sinks.community.postgresql import PostgreSQLSink

TABLE = "ticker_data"
PRIMARY_KEY = ["pair", "timestamp"]
DISTRIBUTIONS = ("quixstreams", "confluent-kafka", "psycopg2-binary")


def to_row(msg: dict[str, Any]) -> dict[str, Any]:
    """The producer-shaped ticker message as the table's columns."""
    return {
        "pair": msg["pair"],
        "timestamp": datetime.fromtimestamp(msg["timestamp"], UTC),
        "last": msg["last"],
        "bid": msg.get("bid"),
        "ask": msg.get("ask"),
        "volume_24h": msg.get("volume_24h"),
    }


def sink(database_url: str) -> PostgreSQLSink:
    db = parse_dsn(database_url)  # a URL or libpq's key=value form
    return PostgreSQLSink(
        host=db.get("host", "127.0.0.1"),
        port=int(db.get("port", 5432)),
        dbname=db["dbname"],
        user=db.get("user", "postgres"),
        password=db.get("password", ""),
        table_name=TABLE,
        schema_auto_update=False,
        primary_key_columns=PRIMARY_KEY,
        upsert_on_primary_key=True,
        include_metadata=False,
    )


def main(argv: list[str]) -> None:
    if argv == ["--versions"]:
        print(json.dumps({d: version(d) for d in DISTRIBUTIONS}))
        return
    parser = argparse.ArgumentParser(prog="bench/_peers_quix.py")
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument(
        "--commit-every",
        type=int,
        default=0,
        help="also checkpoint every N messages (quix's default 0: every 5 s only)",
    )
    args = parser.parse_args(argv)
    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        commit_every=args.commit_every,
        loglevel="WARNING",
        # A SIGKILLed member holds its partitions until its session expires: 6 s (the
        # broker's minimum) instead of 45 s, so the restart test does not wait on it.
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000},
    )
    sdf = app.dataframe(app.topic(args.topic, value_deserializer="json"))
    sdf = sdf.apply(to_row)
    sdf.sink(sink(args.database_url))
    app.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(sys.argv[1:])
