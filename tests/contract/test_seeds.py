"""What the seed documents show, counted: none of their examples goes untested silently.

Every example :mod:`tests.contract.seeds` finds is replayed by one of the contract
modules, by kind:

=============== =======================================================================
kind            replayed by
=============== =======================================================================
message         test_messages (produced to its topic, the stored row checked)
kraken-frame    test_messages (parsed by the producer, produced, the stored row checked)
abbreviated     here: its fields are those of the complete message of its topic
request         test_routes (the route's status and body shape)
response        test_routes (the body of its request has its shape and count)
external        test_routes (Prometheus' /metrics: the API's own metrics endpoint)
websocket       test_live (/ws/raw-ticker); a ``...`` placeholder, here
topic           here (the result topics' names)
=============== =======================================================================
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from infra.settings import load_settings
from tests.contract.conftest import FOUND, MISSING, only, params
from tests.contract.seeds import GOLDEN, RAW_TOPIC, Example, counts

REPLAYED_BY = {
    "message": "test_messages",
    "kraken-frame": "test_messages",
    "abbreviated": "test_seeds",
    "request": "test_routes",
    "response": "test_routes",
    "external": "test_routes",
    "websocket": "test_live",
    "topic": "test_seeds",
}

needs_seeds = pytest.mark.skipif(not FOUND, reason=MISSING)


@needs_seeds
def test_the_seeds_hold_the_golden_count_of_examples() -> None:
    listing = "\n".join(f"{e.id}  {e.text.splitlines()[0][:80]}" for e in FOUND)
    assert counts(FOUND) == GOLDEN, f"the examples found:\n{listing}"
    assert len(FOUND) == sum(sum(kinds.values()) for kinds in GOLDEN.values()) == 56


@needs_seeds
def test_every_kind_is_replayed_somewhere() -> None:
    assert {e.kind for e in FOUND} == set(REPLAYED_BY)


@needs_seeds
def test_every_message_names_its_topic() -> None:
    for example in FOUND:
        if example.kind in ("message", "kraken-frame", "abbreviated"):
            assert example.topic is not None, example.id
            assert RAW_TOPIC.fullmatch(example.topic), example.id
        if example.kind == "message":
            assert isinstance(json.loads(example.text), dict), example.id


def _shown_fields(text: str) -> dict[str, object]:
    """The ``"key": value`` pairs an abbreviated object shows."""
    return {key: json.loads(value) for key, value in re.findall(r'"(\w+)":\s*([^,}]+)', text)}


@pytest.mark.parametrize("example", params("abbreviated"))
def test_an_abbreviated_message_stands_for_the_complete_one_of_its_topic(
    example: Example | None,
) -> None:
    """ARCHITECTURE.md's data-flow step shows ``{"pair": "BTC/USD", "last": 34000, ...}``
    for the rawticker example it documents in full above: those fields are that
    example's (replayed in full by test_messages), and the text is not JSON as is."""
    abbreviated = only(example)
    complete = [
        e
        for e in FOUND
        if e.kind == "message"
        and e.topic == abbreviated.topic
        and e.document == abbreviated.document
    ]
    assert len(complete) == 1
    shown = _shown_fields(abbreviated.text)
    full = json.loads(complete[0].text)
    assert shown
    assert set(shown) <= set(full)
    assert shown["pair"] == full["pair"]
    with pytest.raises(ValueError):
        json.loads(abbreviated.text)


@pytest.mark.parametrize("example", params("websocket"))
def test_a_socket_placeholder_is_the_raw_ticker_host(example: Example | None) -> None:
    """STRATEGIE_INTEGRATION.md's ``ws://20.199.136.163:8000/ws/...`` is the same external
    socket service as ARCHITECTURE.md's ``/ws/raw-ticker`` (same address): the concrete
    one is replayed by test_live."""
    socket = only(example)
    if not socket.placeholder:
        assert urlsplit(socket.text).path == "/ws/raw-ticker"
        return
    concrete = [e for e in FOUND if e.kind == "websocket" and not e.placeholder]
    assert [urlsplit(e.text).netloc for e in concrete] == [urlsplit(socket.text).netloc]


@needs_seeds
def test_the_live_socket_replay_is_given_only_concrete_sockets() -> None:
    """Nothing required is skipped in CI: test_live replays every concrete socket and is
    never handed the placeholder (checked above), which it could only skip."""
    from tests.contract.test_live import SOCKETS

    sockets = [p.values[0] for p in SOCKETS]
    assert all(not p.marks for p in SOCKETS)
    assert sockets == [e for e in FOUND if e.kind == "websocket" and not e.placeholder]
    assert [e.text for e in FOUND if e.kind == "websocket" and e.placeholder] == [
        "ws://20.199.136.163:8000/ws/..."
    ]


@pytest.mark.parametrize("example", params("topic"))
def test_result_topics_have_the_seed_names_by_default(example: Example | None) -> None:
    topics = load_settings({}).kafka.topics
    assert only(example).text in (topics.sentiment, topics.prediction)
