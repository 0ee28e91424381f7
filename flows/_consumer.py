"""Kafka consumer settings shared by every Bytewax Kafka input."""

from __future__ import annotations

CONSUMER_CONFIG: dict[str, str] = {
    # Bytewax opens one consumer per partition, and librdkafka prefetches up to 64 MB
    # into each: a worker behind its topic held that much per partition (the soak run
    # showed memory rising with lag). 16 MB still holds thousands of batches.
    "queued.max.messages.kbytes": "16384",
}
