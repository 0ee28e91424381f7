"""Exceptions raised by the handlers package.

Handlers themselves never raise on input data: bad payloads become a
:class:`~handlers.Rejection`. These exceptions are for programming and
configuration mistakes only (an unknown topic name, a broken coin table).
"""

from __future__ import annotations


class HandlerError(Exception):
    """Root of every exception this package raises; ``detail`` says what went wrong."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownTopicError(HandlerError):
    """No handler is registered for the requested Kafka topic."""


class HandlerConfigError(HandlerError, ValueError):
    """A coin table or handler context is malformed (also a ``ValueError``)."""
