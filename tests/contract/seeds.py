"""The seed documents' examples, read out of the markdown at test time.

The seeds (``../shared/seeds/*.md``, the French design documents of the prototype)
show messages, requests, responses, sockets and topic names in code blocks and
inline code. :func:`examples` finds them by their form, verbatim, with the line they
are on, so the contract tests replay exactly what a prototype user copied from there:

* ``message``: a JSON object documented as a Kafka message (a ```json block under a
  ``rawX`` heading, or the ``Payload JSON`` of a workflow), with its topic and, where
  the document gives one, its key;
* ``abbreviated``: a message shown with ``...`` for the rest of its fields (not JSON);
* ``kraken-frame``: a frame of the Kraken WebSocket the producer parses;
* ``request``: an HTTP request of the API (an endpoint list line, a ``curl``, a path in
  inline code, the path of a workflow's API step); one per method and path per document;
* ``response``: a response body shown in a workflow (``Réponse JSON``), abbreviated;
* ``external``: a request to another server (Prometheus' own ``/metrics``);
* ``websocket``: a WebSocket URL;
* ``topic``: a Kafka topic name given in prose.

Blocks that are no example (diagrams, trees, shell setup, Django code, requirement
lists) are not listed. :data:`GOLDEN` holds how many of each kind each document has:
a change in the documents or in this reader shows up there first.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
DOCUMENTS = (
    "ARCHITECTURE.md",
    "DOCUMENTATION_TECHNIQUE.md",
    "PROJECT_STRUCTURE.md",
    "RESUME_IMPLEMENTATION.md",
    "STRATEGIE_INTEGRATION.md",
)
Kind = Literal[
    "message",
    "abbreviated",
    "kraken-frame",
    "request",
    "response",
    "external",
    "websocket",
    "topic",
]

GOLDEN: dict[str, dict[str, int]] = {
    "ARCHITECTURE.md": {"message": 4, "abbreviated": 1, "request": 10, "websocket": 1},
    "DOCUMENTATION_TECHNIQUE.md": {
        "message": 2,
        "kraken-frame": 1,
        "request": 9,
        "response": 1,
        "external": 1,
    },
    "PROJECT_STRUCTURE.md": {"request": 10},
    "RESUME_IMPLEMENTATION.md": {"request": 11},
    "STRATEGIE_INTEGRATION.md": {"request": 2, "websocket": 1, "topic": 2},
}
"""Examples per document and kind, as found in the seeds this suite was written against."""

RAW_TOPIC = re.compile(r"\b(rawticker|rawtrade|rawarticle|rawalert)\b")
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_ENDPOINT = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE)\s+(/api/v1/\S+)")
_CURL = re.compile(r"\bcurl\s+\"?(https?://[^/\s\"]+)(/[^\s\"]*)\"?")
_API_STEP = re.compile(r"API DJANGO \((/api/v1/[^)\s]+)\)")
_INLINE = re.compile(r"`([^`\n]+)`")
_KEY = re.compile(r"Message publié avec clé:\s*\"([^\"]+)\"")
_KAFKA_STEP = re.compile(r"KAFKA \((raw\w+) topic\)")
API_HOST = "localhost:8000"


class Example(NamedTuple):
    document: str
    line: int
    """1-based line of the example in its document."""
    kind: Kind
    text: str
    """Verbatim: the JSON text, ``METHOD /path?query``, the URL or the topic name."""
    topic: str | None = None
    key: str | None = None
    request: str | None = None
    """For a response: the request it answers (``GET /path``)."""

    @property
    def id(self) -> str:
        return f"{self.document.removesuffix('.md')}:{self.line}:{self.kind}"

    @property
    def placeholder(self) -> bool:
        """A URL whose path ends in ``...`` (STRATEGIE_INTEGRATION.md's ``/ws/...``): it
        stands for a concrete one rather than naming a route of its own."""
        return self.text.endswith("/...")

    @property
    def method(self) -> str:
        return self.text.split(" ", 1)[0]

    @property
    def path(self) -> str:
        return self.text.split(" ", 1)[1]


class _Block(NamedTuple):
    lang: str
    first_line: int
    """1-based line of the block's first content line."""
    lines: list[str]


def _blocks(lines: list[str]) -> tuple[list[_Block], set[int]]:
    """Fenced code blocks (indented ones too, dedented), and the 0-based lines they cover."""
    blocks: list[_Block] = []
    covered: set[int] = set()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, lang = len(opening[1]), opening[2]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _FENCE.match(lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(_Block(lang, i + 2, body))
        covered.update(range(i, j + 1))
        i = j + 1
    return blocks, covered


def _json_object(lines: list[str], start: int) -> tuple[str, int] | None:
    """The JSON-looking object whose ``{`` opens at or after ``lines[start]`` (braces
    balanced, strings respected), and the index of its first line."""
    for first in range(start, min(start + 3, len(lines))):
        if lines[first].lstrip().startswith("{"):
            break
    else:
        return None
    depth, in_string, escaped = 0, False, False
    for last in range(first, len(lines)):
        for char in lines[last]:
            if in_string:
                escaped = not escaped and char == "\\"
                if char == '"' and not escaped:
                    in_string = False
            elif char == '"':
                in_string = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
        if depth == 0:
            text = "\n".join(line.strip() for line in lines[first : last + 1])
            return text, first
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _topic_before(lines: list[str], index: int) -> str | None:
    """The raw topic named just before line ``index``: in the 3 lines above, else the
    nearest heading above."""
    for line in reversed(lines[max(0, index - 3) : index]):
        found = RAW_TOPIC.findall(line)
        if found:
            return str(found[-1])
    for line in reversed(lines[:index]):
        if line.startswith("#"):
            found = RAW_TOPIC.findall(line)
            return str(found[-1]) if found else None
    return None


def _block_examples(document: str, doc_lines: list[str], block: _Block) -> Iterator[Example]:
    lines = block.lines
    at = block.first_line  # document line of lines[0]
    if block.lang == "json":
        text = "\n".join(lines).strip()
        topic = _topic_before(doc_lines, at - 2)
        yield Example(document, at, "message" if _is_json(text) else "abbreviated", text, topic)
        return
    if block.lang not in ("", "bash"):
        return
    api_step: str | None = None
    for i, line in enumerate(lines):
        for method, path in _ENDPOINT.findall(line):
            yield Example(document, at + i, "request", f"{method} {path}")
        curl = _CURL.search(line)
        if curl is not None:
            host, path = curl[1].split("://", 1)[1], curl[2]
            kind: Kind = "request" if host == API_HOST and path.startswith("/api/") else "external"
            yield Example(document, at + i, kind, f"GET {path}" if kind == "request" else curl[0])
        step = _API_STEP.search(line)
        if step is not None:
            api_step = f"GET {step[1]}"
            yield Example(document, at + i, "request", api_step)
        if "Payload JSON" in line:
            found = _json_object(lines, i + 1)
            assert found is not None, f"{document}:{at + i}: a payload without its JSON"
            text, first = found
            rest = "\n".join(lines[first:])
            kafka, key = _KAFKA_STEP.search(rest), _KEY.search(rest)
            yield Example(
                document,
                at + first,
                "message",
                text,
                topic=kafka[1] if kafka else None,
                key=key[1] if key else None,
            )
        if line.strip().startswith("• Réponse JSON:"):
            found = _json_object(lines, i + 1)
            assert found is not None, f"{document}:{at + i}: a response without its JSON"
            text, first = found
            yield Example(document, at + first, "response", text, request=api_step)
        if line.strip() == "Message ticker reçu:":
            frame = lines[i + 1].strip()
            yield Example(document, at + i + 1, "kraken-frame", frame, topic="rawticker")


def _inline_examples(document: str, lines: list[str], covered: set[int]) -> Iterator[Example]:
    for index, line in enumerate(lines):
        if index in covered:
            continue
        for raw in _INLINE.findall(line):
            span = raw.strip()
            if span.startswith("/api/v1/") and len(span) > len("/api/v1/"):
                yield Example(document, index + 1, "request", f"GET {span}")
            elif span.startswith("ws://"):
                yield Example(document, index + 1, "websocket", span)
            elif "topics Kafka de résultats" in line and re.fullmatch(r"[a-z]+(-[a-z]+)+", span):
                yield Example(document, index + 1, "topic", span)


def read_document(document: str, text: str) -> list[Example]:
    """Every example of one document, in document order; requests once per method and path."""
    lines = text.splitlines()
    blocks, covered = _blocks(lines)
    found = [e for block in blocks for e in _block_examples(document, lines, block)]
    found += _inline_examples(document, lines, covered)
    found.sort(key=lambda e: e.line)
    seen: set[str] = set()
    unique: list[Example] = []
    for example in found:
        if example.kind == "request":
            if example.text in seen:
                continue
            seen.add(example.text)
        unique.append(example)
    return unique


def examples(seeds: Path = SEEDS) -> list[Example]:
    """The examples of every seed document (empty when the folder is absent)."""
    if not seeds.is_dir():
        return []
    return [
        example
        for document in DOCUMENTS
        for example in read_document(document, (seeds / document).read_text(encoding="utf-8"))
    ]


def counts(found: list[Example]) -> dict[str, dict[str, int]]:
    """Examples per document and kind (the shape of :data:`GOLDEN`)."""
    by_document: dict[str, Counter[str]] = {document: Counter() for document in DOCUMENTS}
    for example in found:
        by_document[example.document][example.kind] += 1
    return {document: dict(counter) for document, counter in by_document.items()}
