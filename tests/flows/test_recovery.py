"""The recovery directory is created once, however many processes start together."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flows._recovery import ensure_recovery_dir


def test_processes_starting_together_create_one_set_of_partitions(tmp_path: Path) -> None:
    db_dir = tmp_path / "recovery" / "ingest-rawticker"
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda _: ensure_recovery_dir(db_dir, 2), range(8)))
    assert created.count(True) == 1
    assert sorted(p.name for p in db_dir.iterdir()) == ["part-0.sqlite3", "part-1.sqlite3"]
    assert [p.name for p in db_dir.parent.iterdir()] == ["ingest-rawticker"]  # no leftovers


def test_an_existing_directory_is_kept_as_it_is(tmp_path: Path) -> None:
    db_dir = tmp_path / "flow"
    assert ensure_recovery_dir(db_dir, 1)
    assert not ensure_recovery_dir(db_dir, 4)  # the partition count is fixed at creation
    assert [p.name for p in db_dir.iterdir()] == ["part-0.sqlite3"]
