"""The one exception root of CryptoViz, and the exceptions of the handlers package.

Every error the project raises on purpose derives from :class:`CryptoVizError` and
carries ``detail``: what went wrong and what to do about it, written for whoever
reads it (an operator at a terminal, an API client). The root lives here, in the
pure bottom layer, so that every package can derive from it. Each program's
``main`` catches the root once (:func:`infra.cli.run_program`): a
:class:`ConfigError` exits 2, any other root error exits 1, both as one line.

The tree (the test ``tests/handlers/test_errors.py`` keeps it complete)::

    CryptoVizError                  root; ``detail``
    ├── ConfigError                 bad configuration or usage; programs exit 2
    │   ├── SettingsError           infra.settings: an environment variable or settings file
    │   ├── UnknownTopicError       handlers: no handler for that topic (also a HandlerError)
    │   └── HandlerConfigError      handlers: bad coin table or context (also HandlerError,
    │                               ValueError)
    ├── HandlerError                handlers: a record that has no wire form
    ├── StackError                  infra: a server or tool could not be prepared or started
    │   └── PGliteUnavailableError  infra.timescale_pglite: PGlite cannot run here
    ├── MigrationError              infra.migrate: a migration failed or history mismatches
    ├── OffsetsUnavailable          infra.kafka_offsets: the brokers did not answer in time
    ├── IngestError                 flows._pg_writer: a batch could not be written
    │   ├── DatabaseUnavailable     the database is unreachable; the batch is retried
    │   └── WriterFailed            flows._pg_sink: the writer thread stopped; the flow stops
    ├── DeliveryFailed              flows.producers.kafka_edge: Kafka never acknowledged
    ├── FeedError                   flows.producers.news: a feed could not be fetched or parsed
    ├── RestError                   flows.producers.trades: Kraken's REST API failed
    └── ApiError                    api.errors: shown to the client; HTTP status by subclass
        ├── BadRequest              400
        ├── Unauthorized            401
        ├── NotFound                404
        ├── Conflict                409
        └── Unavailable             503

Handlers themselves never raise on input data: bad payloads become a
:class:`~handlers.Rejection`. The handler exceptions are for programming and
configuration mistakes only (an unknown topic name, a broken coin table).
"""

from __future__ import annotations


class CryptoVizError(Exception):
    """Root of every error CryptoViz raises on purpose; ``detail`` says what and how to fix it."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigError(CryptoVizError):
    """The configuration or the command line is wrong; nothing was started (exit status 2)."""


class HandlerError(CryptoVizError):
    """Root of every exception the handlers package raises."""


class UnknownTopicError(HandlerError, ConfigError):
    """No handler is registered for the requested Kafka topic."""


class HandlerConfigError(HandlerError, ConfigError, ValueError):
    """A coin table or handler context is malformed (also a ``ValueError``)."""
