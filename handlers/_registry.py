"""Topic -> handler registry: the "serverless" core the ingestion flow dispatches on."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from handlers._alert import parse_alert
from handlers._article import parse_article
from handlers._context import HandlerContext
from handlers._errors import UnknownTopicError
from handlers._records import Record, Rejection
from handlers._ticker import parse_ticker
from handlers._trade import parse_trade


class Handler(Protocol):
    """A pure function from one Kafka payload to a record or a rejection; never raises."""

    def __call__(self, payload: bytes, ctx: HandlerContext) -> Record | Rejection: ...


HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "rawticker": parse_ticker,
        "rawtrade": parse_trade,
        "rawarticle": parse_article,
        "rawalert": parse_alert,
    }
)

STAMPED_TOPICS: frozenset[str] = frozenset({"rawarticle"})
"""Topics whose handler reads ``ctx.record_time`` (an article may carry no time of its
own): the platform gives each of their messages its own context,
:func:`handlers.record_context` of its Kafka record time. The other handlers share one
context per batch."""


def handler_for(topic: str) -> Handler:
    """The handler for a raw topic; raises :class:`UnknownTopicError` for any other name."""
    try:
        return HANDLERS[topic]
    except (KeyError, TypeError):
        raise UnknownTopicError(
            f"no handler for topic {topic!r} (known: {', '.join(HANDLERS)})"
        ) from None
