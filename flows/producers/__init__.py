"""Producers: live Kraken v2 and news feeds, price alerts, offline replay, synthetic market.

Each one is a Bytewax dataflow run as its own worker (``python -m flows.run NAME``,
see :mod:`flows.producers.workers` for the names) that ends in the same Kafka edge
(:mod:`flows.producers.kafka_edge`): acks=all, idempotence, retried deliveries,
key = canonical pair or coin, a W3C ``traceparent`` header per message. Every
message is built by the pure parsers of :mod:`handlers` and parses back with the
ingestion handlers: one contract on both sides.
"""
