"""Canonical coin symbols inside Spark, from the one coin table (``handlers.CoinTable``).

``CoinTable`` itself cannot travel to executors (it is immutable through a
``__setattr__`` that unpickling would hit), so it is used on the driver as the
oracle that builds plain dictionaries, and those dictionaries travel instead:

* ticks (the hot stream) are canonicalised by a pure JVM expression,
  :func:`pair_column`, over two map literals: ``assets`` (any coin or quote
  spelling -> canonical symbol) and ``compact`` (``xxbtzusd``-style spellings ->
  canonical pair, each entry computed by ``CoinTable.pair``). No Python worker is
  involved. :func:`canonical_pair` is the same rule in Python, for tests;
* articles (a few hundred per window) go through a Python UDF that rebuilds the
  ``CoinTable`` once per worker from the parsed TOML (a plain dict) and runs the
  article handler itself on each record (:func:`article_udf`).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from handlers import EPOCH, ArticleRecord, CoinTable, parse_article, record_context
from infra.settings import SettingsError, load_coin_table

if TYPE_CHECKING:
    from pyspark.sql import Column

# Mirrors of handlers._symbols: the forms CoinTable.pair accepts.
_SPLIT_RE = r"^([A-Za-z0-9]{1,16})[/-]([A-Za-z0-9]{1,16})$"
_SYMBOL_RE = r"^[A-Z0-9]{1,12}$"
_COMPACT = re.compile(r"[A-Za-z0-9]{2,24}")
_SPLIT = re.compile(_SPLIT_RE)
_SYMBOL = re.compile(_SYMBOL_RE)
_MAX_PAIR_TEXT = 40
_PROBE_BASE = "Q0PROBE9"
"""A well-formed symbol no coin table uses: ``table.pair`` passes it through unchanged."""


class SymbolMaps(msgspec.Struct, frozen=True, kw_only=True):
    """Plain lookup tables derived from a ``CoinTable`` (keys are lower case)."""

    assets: dict[str, str]
    """Every coin and quote spelling (symbol, name, ticker, alias) -> canonical symbol."""
    compact: dict[str, str]
    """Every ``<asset spelling><quote spelling>`` without separator -> canonical pair."""


class Symbols(msgspec.Struct, frozen=True, kw_only=True):
    """The coin table three ways: the oracle, its source data, and the derived maps."""

    data: dict[str, Any]
    """The parsed coin TOML; rebuilt into a ``CoinTable`` inside Python workers."""
    maps: SymbolMaps

    @property
    def table(self) -> CoinTable:
        return _table_from_json(json.dumps(self.data, sort_keys=True))


def load_symbols(coins_file: Path) -> Symbols:
    """Read the coin table file and derive the executor-side lookup tables."""
    table = load_coin_table(coins_file)  # validates and gives the settings' error messages
    with coins_file.open("rb") as fh:
        data = tomllib.load(fh)
    quotes = data.get("quotes", {})
    return Symbols(data=data, maps=build_symbol_maps(table, quotes))


def _coin_spellings(table: CoinTable) -> dict[str, str]:
    spellings: dict[str, str] = {}
    for coin in table.coins:
        for alias in coin.spellings:
            # Ask the table rather than trusting the attribute lists: what it answers wins.
            symbol = table.coin(alias)
            if symbol is not None:
                spellings[alias.strip().lower()] = symbol
    return spellings


def build_symbol_maps(table: CoinTable, quotes: Mapping[str, Sequence[str]]) -> SymbolMaps:
    """Derive :class:`SymbolMaps` from ``table`` and the ``[quotes]`` aliases it was built from.

    Every entry is checked against ``table.pair`` on a ``<spelling>/<quote>`` probe,
    so the maps can only say what the table says.
    """
    assets = _coin_spellings(table)
    quote_spellings: dict[str, str] = {}
    for quote, aliases in quotes.items():
        for alias in (quote, *aliases):
            key = alias.strip().lower()
            probe = table.pair(f"{_PROBE_BASE}/{key}")
            if probe is None:
                raise SettingsError(f"coin table: quote alias {alias!r} is not accepted in pairs")
            canonical = probe.split("/")[-1]
            quote_spellings[key] = canonical
            assets[key] = canonical  # CoinTable also lets quote aliases win
    compact: dict[str, str] = {}
    for base in assets:
        if not _COMPACT.fullmatch(base):
            continue
        for quote in quote_spellings:
            text = base + quote
            if not _COMPACT.fullmatch(text):
                continue
            pair = table.pair(text)
            if pair is not None:
                compact[text] = pair
    return SymbolMaps(assets=assets, compact=compact)


def _asset(token: str, maps: SymbolMaps) -> str | None:
    known = maps.assets.get(token.lower())
    if known is not None:
        return known
    upper = token.upper()
    return upper if _SYMBOL.fullmatch(upper) else None


def canonical_pair(text: object, maps: SymbolMaps) -> str | None:
    """``CoinTable.pair`` computed from the plain maps (the rule :func:`pair_column` runs)."""
    if not isinstance(text, str):
        return None
    raw = text.strip()
    if len(raw) > _MAX_PAIR_TEXT:
        return None
    split = _SPLIT.fullmatch(raw)
    if split is None:
        return maps.compact.get(raw.lower())
    base, quote = _asset(split[1], maps), _asset(split[2], maps)
    if base is None or quote is None or base == quote:
        return None
    return f"{base}/{quote}"


def tick_symbol(pair: object, maps: SymbolMaps, quote: str) -> str | None:
    """The coin whose forecasts a tick of ``pair`` feeds, or ``None`` if none does.

    The rule :func:`spark_batch.sources.parse_ticks` runs in the JVM: the canonical
    pair (:func:`canonical_pair`) must be ``<coin>/<quote>``, and the coin is the part
    before the slash. For the driver (``flows.import_prices`` warms the models).
    """
    canonical = canonical_pair(pair, maps)
    if canonical is None or not canonical.endswith("/" + quote):
        return None
    return canonical.split("/", 1)[0]


def _map_literal(mapping: Mapping[str, str]) -> Column:
    from pyspark.sql import functions as F

    if not mapping:
        return F.create_map().cast("map<string,string>")
    # A map of literals is constant-folded into one literal by the optimizer.
    return F.create_map(*[F.lit(item) for pair in sorted(mapping.items()) for item in pair])


def pair_column(pair: Column, maps: SymbolMaps) -> Column:
    """Spark expression: the canonical ``BASE/QUOTE`` of ``pair``, or null (JVM only)."""
    from pyspark.sql import functions as F

    assets = _map_literal(maps.assets)
    raw = F.regexp_replace(pair, r"^\s+|\s+$", "")
    first = F.regexp_extract(raw, _SPLIT_RE, 1)
    second = F.regexp_extract(raw, _SPLIT_RE, 2)

    def asset(token: Column) -> Column:
        upper = F.upper(token)
        return F.coalesce(
            F.element_at(assets, F.lower(token)),
            F.when(upper.rlike(_SYMBOL_RE), upper),
        )

    base, quote = asset(first), asset(second)
    split_pair = F.when(base != quote, F.concat(base, F.lit("/"), quote))
    compact = F.element_at(_map_literal(maps.compact), F.lower(raw))
    return (
        F.when(pair.isNull() | (F.length(raw) > _MAX_PAIR_TEXT), F.lit(None).cast("string"))
        .when(first != "", split_pair)
        .otherwise(compact)
    )


@lru_cache(maxsize=4)
def _table_from_json(data_json: str) -> CoinTable:
    # Keyed by the JSON text so each Python worker builds the table once per coin file.
    return CoinTable.from_mapping(json.loads(data_json))


ArticleRow = tuple[str, int, float, list[str]]
"""(article_id, time in epoch microseconds, sentiment score, canonical coins)."""


def parsed_article(
    table: CoinTable, value: bytes | None, kafka_us: int | None
) -> ArticleRow | None:
    """One ``rawarticle`` record as ingestion reads it, or None where ingestion refuses it.

    ``kafka_us`` is the record's Kafka time (epoch microseconds): the article's time
    when it has none of its own, and the "now" that bounds future times, as in
    ``flows._parse.BatchParser``.
    """
    if value is None or kafka_us is None:
        return None
    seen = EPOCH + timedelta(microseconds=kafka_us)
    record = parse_article(bytes(value), record_context(table, seen))
    if not isinstance(record, ArticleRecord):
        return None
    micros = (record.time - EPOCH) // timedelta(microseconds=1)
    return (
        record.article_id,
        micros,
        record.sentiment_score,
        list(record.cryptocurrencies_mentioned),
    )


def article_udf(symbols: Symbols) -> Callable[[Column, Column], Column]:
    """A Spark UDF ``(value binary, kafka time in epoch µs) -> struct`` (null if refused):
    ``article_id``, ``time_us``, ``score``, ``coins`` (see :func:`parsed_article`)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    data_json = json.dumps(symbols.data, sort_keys=True)

    def parse(value: bytes | None, kafka_us: int | None) -> ArticleRow | None:
        return parsed_article(_table_from_json(data_json), value, kafka_us)

    row = T.StructType(
        [
            T.StructField("article_id", T.StringType(), False),
            T.StructField("time_us", T.LongType(), False),
            T.StructField("score", T.DoubleType(), False),
            T.StructField("coins", T.ArrayType(T.StringType(), False), False),
        ]
    )
    udf: Callable[[Column, Column], Column] = F.udf(parse, row, useArrow=False)
    return udf
