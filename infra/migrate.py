"""Versioned SQL migrations for PostgreSQL and TimescaleDB.

Layout of ``sql/migrations/`` (one version = one or more files)::

    0001_core.sql                     shared part, run on every database
    0003_timeseries.timescale.sql     run only when the flavour is "timescale"
    0003_timeseries.plain.sql         run only when the flavour is "plain"

A version may have a shared part, flavour parts, or both (shared part first); if it
has a flavour part it must have both, so no flavour silently skips a version.

The *flavour* of a database is ``"timescale"`` when the ``timescaledb`` extension is
available on the server (:func:`detect_flavour`), ``"plain"`` otherwise. It is fixed by
the first migration ever applied and recorded per version in ``schema_migrations``:
later runs keep it even if the server's extensions change.

Guarantees of :func:`migrate`:

* pending versions run in order, each in its own transaction together with its
  ``schema_migrations`` row (a failing migration leaves nothing behind);
* a re-run applies nothing;
* an applied migration whose files changed (SHA-256 of what ran) is an error, as is
  an applied version missing from the files or a pending version older than an
  applied one;
* concurrent runners are serialised by a session-level advisory lock.

Command line::

    python -m infra.migrate [--database-url URL] [--flavour auto|plain|timescale]

prints ``migrations: applied 0001_core (plain)`` for each version it applies and, on
error, one ``migrations: FAILED: ...`` line. The URL defaults to ``DATABASE_URL``.
Exit statuses (:mod:`infra.cli`): 0 up to date, 1 a migration failed or the server is
unreachable, 2 no database given.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from handlers import CryptoVizError
from infra.cli import run_program

Flavour = Literal["plain", "timescale"]
FLAVOURS: tuple[Flavour, ...] = ("plain", "timescale")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
MIGRATIONS_TABLE = "schema_migrations"
# Key of the session-level advisory lock serialising runners (any fixed bigint):
# the first 8 bytes of sha256("cryptoviz.schema_migrations"), as a signed integer.
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"cryptoviz.schema_migrations").digest()[:8], "big", signed=True
)

_FILE_RE = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<flavour>plain|timescale))?\.sql$"
)


class MigrationError(CryptoVizError):
    """A migration could not be applied, or the recorded history does not match the files.

    ``detail`` (also ``str(error)``) says which migration and what to do about it.
    """


@dataclass(frozen=True, slots=True)
class Migration:
    """One version: its shared SQL and, optionally, one SQL part per flavour."""

    version: int
    name: str
    shared: str | None
    flavoured: dict[str, str]  # flavour -> SQL (empty, or both flavours)

    @property
    def label(self) -> str:
        """``0001_core``: the file stem shared by all parts."""
        return f"{self.version:04d}_{self.name}"

    def script(self, flavour: Flavour) -> str:
        """The SQL executed for ``flavour`` (shared part first)."""
        parts = [p for p in (self.shared, self.flavoured.get(flavour)) if p is not None]
        return "\n".join(parts)

    def checksum(self, flavour: Flavour) -> str:
        """SHA-256 (hex) of :meth:`script`, line endings normalised to ``\\n``."""
        return hashlib.sha256(self.script(flavour).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    version: int
    name: str
    flavour: Flavour
    checksum: str
    duration_s: float

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What :func:`migrate` did."""

    flavour: Flavour
    applied: tuple[AppliedMigration, ...]
    """Migrations applied by this run, in order (empty when already up to date)."""
    already_applied: tuple[int, ...]
    """Versions found already applied when the run started."""

    @property
    def applied_versions(self) -> tuple[int, ...]:
        return tuple(m.version for m in self.applied)

    @property
    def current_version(self) -> int:
        """Highest applied version after the run (0 for an empty migration set)."""
        return max((*self.already_applied, *self.applied_versions), default=0)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read and validate the migration files of ``directory``, ordered by version."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    names: dict[int, str] = {}
    shared: dict[int, str] = {}
    flavoured: dict[int, dict[str, str]] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: not a migration file name; expected NNNN_name.sql, "
                "NNNN_name.plain.sql or NNNN_name.timescale.sql (lowercase name)"
            )
        version, name = int(match["version"]), match["name"]
        if names.setdefault(version, name) != name:
            raise MigrationError(
                f"{path.name}: version {version:04d} is already named {names[version]!r}; "
                "every file of a version must share its name"
            )
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        if match["flavour"] is None:
            shared[version] = text
        else:
            flavoured.setdefault(version, {})[match["flavour"]] = text
    migrations = []
    for version in sorted(names):
        parts = flavoured.get(version, {})
        if parts and set(parts) != set(FLAVOURS):
            missing = next(f for f in FLAVOURS if f not in parts)
            raise MigrationError(
                f"{version:04d}_{names[version]}: has a flavour-specific part but no "
                f"{version:04d}_{names[version]}.{missing}.sql; add it (it may hold only a "
                "comment) so that no flavour silently skips this version"
            )
        migrations.append(Migration(version, names[version], shared.get(version), parts))
    if migrations and migrations[0].version < 1:
        raise MigrationError("migration versions start at 0001")
    return migrations


def detect_flavour(conn: psycopg.Connection[Any]) -> Flavour:
    """``"timescale"`` if the server offers the timescaledb extension, else ``"plain"``."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return "timescale" if row is not None else "plain"


def redact(conninfo: str) -> str:
    """``conninfo`` with any password replaced by ``***`` (for messages)."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable connection string>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - a mask, not a password
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def migrate(
    conninfo: str,
    *,
    flavour: Flavour | None = None,
    migrations_dir: Path = MIGRATIONS_DIR,
    on_applied: Callable[[AppliedMigration], None] | None = None,
    lock_timeout_s: float = 60.0,
) -> MigrationReport:
    """Apply the pending migrations of ``migrations_dir`` to the database at ``conninfo``.

    ``flavour`` forces a flavour (default: the recorded one, else :func:`detect_flavour`).
    ``on_applied`` is called after each migration commits (for progress output).
    Raises :class:`MigrationError` on any failure; nothing of a failed migration stays.
    """
    migrations = load_migrations(migrations_dir)
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to {redact(conninfo)}: {exc}".strip()) from exc
    with conn:
        _acquire_lock(conn, lock_timeout_s)
        try:
            return _migrate_locked(conn, migrations, migrations_dir, flavour, on_applied)
        finally:
            # Closing the session releases the lock anyway; unlock early when possible.
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def _acquire_lock(conn: psycopg.Connection[tuple[object, ...]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            return
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"another migration runner has held the lock (pg advisory lock "
                f"{ADVISORY_LOCK_KEY}) for more than {timeout_s:g}s; wait for it to finish, "
                "or find it in pg_locks (locktype = 'advisory')"
            )
        time.sleep(0.2)


_CREATE_TABLE = sql.SQL(
    """CREATE TABLE IF NOT EXISTS {} (
        version     integer     PRIMARY KEY,
        name        text        NOT NULL,
        checksum    text        NOT NULL,
        flavour     text        NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
    )"""
)


def _migrate_locked(
    conn: psycopg.Connection[tuple[object, ...]],
    migrations: Sequence[Migration],
    migrations_dir: Path,
    requested: Flavour | None,
    on_applied: Callable[[AppliedMigration], None] | None,
) -> MigrationReport:
    table = sql.Identifier(MIGRATIONS_TABLE)
    conn.execute(_CREATE_TABLE.format(table))
    rows = conn.execute(
        sql.SQL("SELECT version, name, checksum, flavour FROM {} ORDER BY version").format(table)
    ).fetchall()
    history = {int(cast(int, v)): (str(n), str(c), str(f)) for v, n, c, f in rows}
    flavour = _resolve_flavour(conn, history, requested)
    by_version = {m.version: m for m in migrations}

    for version, (name, checksum, applied_flavour) in history.items():
        local = by_version.get(version)
        if local is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name} applied, but there is no "
                f"such file in {migrations_dir}: this code is older than the database"
            )
        if local.name != name:
            raise MigrationError(
                f"migration {version:04d} was applied as {name!r} but the file is now named "
                f"{local.name!r}; applied migrations must not be renamed"
            )
        expected = local.checksum(cast(Flavour, applied_flavour))
        if expected != checksum:
            raise MigrationError(
                f"migration {local.label} ({applied_flavour}) was modified after it was "
                f"applied: checksum recorded {checksum[:12]}…, files now give "
                f"{expected[:12]}…; restore the original file and put the change in a new "
                "migration"
            )

    pending = [m for m in migrations if m.version not in history]
    if pending and history and pending[0].version < max(history):
        raise MigrationError(
            f"migration {pending[0].label} is pending but a later version "
            f"({max(history):04d}) is already applied; renumber it after {max(history):04d}"
        )

    applied: list[AppliedMigration] = []
    insert = sql.SQL(
        "INSERT INTO {} (version, name, checksum, flavour) VALUES (%s, %s, %s, %s)"
    ).format(table)
    for migration in pending:
        script = migration.script(flavour)
        checksum = migration.checksum(flavour)
        started = time.monotonic()
        try:
            with conn.transaction():
                # Only the migration's own SQL (no parameters): simple query protocol,
                # so a file may hold many statements.
                conn.execute(script.encode())
                # Never prepared (psycopg prepares a statement on its 5th run): a
                # server that shares one session between its clients (PGlite) would
                # keep the statement's name and refuse the next client's first one.
                conn.execute(
                    insert, (migration.version, migration.name, checksum, flavour), prepare=False
                )
        except psycopg.Error as exc:
            raise MigrationError(_describe_failure(migration, flavour, script, exc)) from exc
        done = AppliedMigration(
            migration.version, migration.name, flavour, checksum, time.monotonic() - started
        )
        applied.append(done)
        if on_applied is not None:
            on_applied(done)
    return MigrationReport(flavour, tuple(applied), tuple(sorted(history)))


def _resolve_flavour(
    conn: psycopg.Connection[tuple[object, ...]],
    history: dict[int, tuple[str, str, str]],
    requested: Flavour | None,
) -> Flavour:
    recorded = {f for _, _, f in history.values()}
    if len(recorded) > 1:
        raise MigrationError(
            f"{MIGRATIONS_TABLE} mixes flavours {sorted(recorded)}; the database is "
            "inconsistent and needs manual repair"
        )
    if recorded:
        (flavour,) = recorded
        if flavour not in FLAVOURS:
            raise MigrationError(f"{MIGRATIONS_TABLE} records an unknown flavour {flavour!r}")
        if requested is not None and requested != flavour:
            raise MigrationError(
                f"the database was migrated with the {flavour!r} flavour; it cannot continue "
                f"as {requested!r}"
            )
        return flavour
    if requested is None:
        return detect_flavour(conn)
    if requested == "timescale" and detect_flavour(conn) != "timescale":
        raise MigrationError(
            "flavour 'timescale' requested but the server has no timescaledb extension "
            "(pg_available_extensions)"
        )
    return requested


def _describe_failure(
    migration: Migration, flavour: Flavour, script: str, exc: psycopg.Error
) -> str:
    where = ""
    position = exc.diag.statement_position
    if position is not None and position.isdigit():
        # statement_position counts characters from 1 in the whole script.
        line = script.count("\n", 0, int(position) - 1) + 1
        where = f" at line {line}"
        part = _part_of_line(migration, flavour, line)
        if part:
            where += f" of {part}"
    message = (exc.diag.message_primary or str(exc)).strip()
    detail = f" ({exc.sqlstate})" if exc.sqlstate else ""
    context = (exc.diag.context or "").strip().replace("\n", " / ")
    if context:
        detail += f" [context: {context}]"
    return (
        f"{migration.label} ({flavour}) failed{where}: {message}{detail}; nothing of it was applied"
    )


def _part_of_line(migration: Migration, flavour: Flavour, line: int) -> str:
    """File name (and line within it) of line ``line`` of :meth:`Migration.script`."""
    shared_lines = migration.shared.count("\n") + 1 if migration.shared is not None else 0
    if migration.shared is not None and line <= shared_lines:
        return f"{migration.label}.sql"
    if flavour in migration.flavoured:
        return f"{migration.label}.{flavour}.sql line {line - shared_lines}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.migrate", description="Apply the pending SQL migrations."
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL/TimescaleDB connection URL (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--flavour",
        choices=("auto", *FLAVOURS),
        default="auto",
        help="force a flavour (default: the recorded one, else detect timescaledb)",
    )
    args = parser.parse_args(argv)
    return run_program("migrations: FAILED", lambda: _migrate_cli(args))


def _migrate_cli(args: argparse.Namespace) -> None:
    from infra.settings import SettingsError, load_settings

    url: str | None = args.database_url or load_settings().database.url
    if not url:
        raise SettingsError("no database; pass --database-url URL or set DATABASE_URL")

    def progress(done: AppliedMigration) -> None:
        print(f"migrations: applied {done.label} ({done.flavour})", flush=True)

    requested = None if args.flavour == "auto" else cast(Flavour, args.flavour)
    report = migrate(url, flavour=requested, on_applied=progress)
    state = f"{len(report.applied)} applied" if report.applied else "nothing to apply"
    print(
        f"migrations: up to date at version {report.current_version:04d} "
        f"({report.flavour}, {state})"
    )


if __name__ == "__main__":
    sys.exit(main())
