"""Batch writes on real PostgreSQL: rows the database refuses, whatever the handler accepted.

The handlers check every range they know of, so the database refusing a row means a
rule only the database holds (a constraint or trigger added by an operator, a
migration the handlers predate). The tests add such rules to their own fresh
database and check that the writer commits the rest of the batch and names the
refused rows with the database's reason, on both write paths (optimistic COPY for
tables keyed by their primary key, staging + merge for articles).
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from flows._pg_writer import BatchWriter, DatabaseUnavailable
from flows._tables import TABLES
from handlers import HandlerContext, Record, Rejection, handler_for
from infra.settings import Settings
from tests.flows._payloads import VALID

pytestmark = pytest.mark.integration

N = 12
REFUSED = 5
"""Index of the row the database refuses in each batch."""

# One rule per table the handler cannot know of, refusing the REFUSED-th valid payload.
RULES: dict[str, str] = {
    # A CHECK constraint (integrity error 23514) on the optimistic COPY path.
    "rawticker": "ALTER TABLE ticker_data ADD CONSTRAINT no_30005 CHECK (last <> 30000.05)",
    # A trigger raising a data error (22003) on the optimistic COPY path.
    "rawtrade": """
        CREATE FUNCTION refuse_1000005() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.trade_id = 1000005 THEN
                RAISE EXCEPTION 'trade id out of the desk''s range' USING ERRCODE = '22003';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_1000005 BEFORE INSERT ON trade_data
            FOR EACH ROW EXECUTE FUNCTION refuse_1000005();
    """,
    # A CHECK constraint on the staging + merge path (articles dedup on article_id).
    "rawarticle": "ALTER TABLE article_data ADD CONSTRAINT no_story_5 "
    "CHECK (title <> 'Bitcoin story number 5')",
    # A trigger's plain RAISE EXCEPTION (P0001), the usual way a trigger refuses a row.
    "rawalert": """
        CREATE FUNCTION refuse_34005() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.last_price = 34005 THEN
                RAISE EXCEPTION 'alert price % is under review', NEW.last_price;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_34005 BEFORE INSERT ON alert_data
            FOR EACH ROW EXECUTE FUNCTION refuse_34005();
    """,
}
SQLSTATE = {"rawticker": "23514", "rawtrade": "22003", "rawarticle": "23514", "rawalert": "P0001"}


def records(topic: str, settings: Settings) -> list[Record]:
    ctx = HandlerContext(coins=settings.coin_table(), now=datetime.now(UTC))
    out = [handler_for(topic)(VALID[topic](i), ctx) for i in range(N)]
    assert not any(isinstance(r, Rejection) for r in out), "the handler accepts every row"
    return [r for r in out if not isinstance(r, Rejection)]


def table_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("topic", sorted(RULES))
def test_a_row_the_database_refuses_is_named_and_the_rest_of_the_batch_commits(
    topic: str, fresh_db: str, stack: Settings
) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(RULES[topic])
    spec = TABLES[topic]
    batch = records(topic, stack)
    writer = BatchWriter(fresh_db, spec)
    try:
        first = writer.write(batch)
        assert (first.inserted, first.duplicates) == (N - 1, 0)
        [(index, reason)] = first.refused
        assert index == REFUSED
        assert reason.startswith(f"database refused row: {SQLSTATE[topic]} "), reason
        assert table_rows(fresh_db, spec.table) == N - 1

        # Redelivered: the stored rows are duplicates, the refused one is refused again.
        again = writer.write(batch)
        assert (again.inserted, again.duplicates) == (0, N - 1)
        assert [i for i, _reason in again.refused] == [REFUSED]
        assert table_rows(fresh_db, spec.table) == N - 1
    finally:
        writer.close()


def test_an_unreachable_database_is_unavailable_not_a_refusal(stack: Settings) -> None:
    from infra._procs import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    writer = BatchWriter(url, TABLES["rawticker"], connect_timeout=2)
    with pytest.raises(DatabaseUnavailable) as raised:
        writer.write(records("rawticker", stack))
    assert "cannot connect to the database" in raised.value.detail
    assert raised.value.retry_after == 0.0, "nothing said when: the caller's backoff decides"
