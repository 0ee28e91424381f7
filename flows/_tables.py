"""Where each record type lands: table, column -> record attribute, idempotency key.

One :class:`TableSpec` per raw topic. The ingestion sink is generic; adding a
topic means adding a handler in ``handlers`` and a spec here. Every attribute of
the record is stored in the column of the same name, unless ``renamed`` maps a
column to it; ``computed`` adds record properties. The row builder is generated
from that mapping, so a column and its value cannot drift apart, and a record
attribute added to the handlers is a column here (the tests check the columns
against the migrated tables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from handlers import AlertRecord, ArticleRecord, Record, TickerRecord, TradeRecord

Row = tuple[Any, ...]


def _row_builder(
    attributes: Mapping[str, str], convert: Mapping[str, Callable[[Any], Any]]
) -> Callable[[Any], Row]:
    """``to_row(record)``: ``(record.time, record.pair, ...)`` in column order.

    Generated once per spec (as dataclasses generate ``__init__``): attribute reads
    spelt out cost half what ``attrgetter`` does on a Struct, on the ingestion hot path.
    """
    namespace: dict[str, object] = {}
    values: list[str] = []
    for column, attribute in attributes.items():
        if column in convert:
            namespace[f"convert_{column}"] = convert[column]
            values.append(f"convert_{column}(record.{attribute})")
        else:
            values.append(f"record.{attribute}")
    exec(f"def to_row(record):\n    return ({', '.join(values)},)\n", namespace)  # noqa: S102 - names only
    to_row: Callable[[Any], Row] = namespace["to_row"]  # type: ignore[assignment]
    return to_row


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    record: type[msgspec.Struct]
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Column -> record attribute, where the names differ."""
    computed: tuple[str, ...] = ()
    """Record properties stored too (in the column of the same name)."""
    convert: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    """Column -> conversion of the attribute's value (what psycopg cannot adapt as is)."""
    dedup_on: tuple[str, ...] | None = None
    """Extra idempotency check beyond the primary key: skip rows whose values in
    these columns already exist (article ids, whose publication time may differ
    between two deliveries of the same story)."""
    columns: tuple[str, ...] = field(init=False)
    """The columns written, in row order."""
    to_row: Callable[[Any], Row] = field(init=False)

    def __post_init__(self) -> None:
        attributes = self.attributes
        missing = [a for a in attributes.values() if not hasattr(self.record, a)]
        if missing:
            raise TypeError(f"{self.table}: {self.record.__name__} has no {', '.join(missing)}")
        object.__setattr__(self, "columns", tuple(attributes))
        object.__setattr__(self, "to_row", _row_builder(attributes, self.convert))

    @property
    def attributes(self) -> dict[str, str]:
        """Column -> record attribute, in row order (renamed columns first)."""
        renamed = set(self.renamed.values())
        same = [a for a in self.record.__struct_fields__ if a not in renamed]
        return {**self.renamed, **{name: name for name in (*same, *self.computed)}}

    @property
    def optimistic_copy(self) -> bool:
        """Straight COPY is safe only when the primary key alone guarantees idempotency."""
        return self.dedup_on is None


_TIME = {"timestamp": "time"}

TICKER = TableSpec("ticker_data", TickerRecord, _TIME)
TRADE = TableSpec("trade_data", TradeRecord, _TIME, computed=("trade_key",))
ARTICLE = TableSpec(
    "article_data",
    ArticleRecord,
    _TIME,
    convert={"cryptocurrencies_mentioned": list},  # a text[] from a tuple
    dedup_on=("article_id",),
)
ALERT = TableSpec("alert_data", AlertRecord, _TIME)

TABLES: dict[str, TableSpec] = {
    "rawticker": TICKER,
    "rawtrade": TRADE,
    "rawarticle": ARTICLE,
    "rawalert": ALERT,
}


def rows_for(spec: TableSpec, records: Sequence[Record]) -> list[Row]:
    to_row = spec.to_row
    return [to_row(r) for r in records]
