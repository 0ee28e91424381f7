"""Other commits of this repository as runnable folders, for the A/B benchmarks.

A side is a git ref exported with ``git archive`` into a temporary folder, or this
working tree itself (``THIS``, uncommitted changes included). Every side runs with this
virtualenv's Python, in its own folder (cwd and ``PYTHONPATH``), so it imports its own
code; and a side's database is migrated by the side's own migrations, since the schema
changes between commits (a column renamed, a table added) and older code breaks on a
newer schema.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench._peers_run import System
from infra._procs import free_port

REPO = Path(__file__).resolve().parent.parent
THIS = "."
"""The ref that names this working tree as it is, not a commit."""


@dataclass(frozen=True, slots=True)
class Checkout:
    label: str
    """Unique among the sides of one run: the ref (``this`` for ``THIS``), numbered from
    its second mention when given twice."""
    ref: str
    commit: str
    """The ref's short commit; this working tree's has ``+worktree`` when it differs."""
    code: Path


def export(ref: str, into: Path) -> str:
    """The tree of ``ref`` in ``into``; returns its short commit."""
    archive = subprocess.run(
        ["git", "archive", ref], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return _short(ref)


def _short(ref: str) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
    )
    return commit.stdout.strip()


def checkouts(refs: list[str], into: Path) -> list[Checkout]:
    """Each of ``refs`` as a folder below ``into`` (``THIS``: this working tree)."""
    sides = []
    for i, ref in enumerate(refs):
        name = "this" if ref == THIS else ref
        label = name if refs.index(ref) == i else f"{name}#{refs[: i + 1].count(ref)}"
        if ref == THIS:
            changed = subprocess.run(
                ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                check=True,
            ).stdout.strip()  # fmt: skip
            commit = _short("HEAD") + ("+worktree" if changed else "")
            sides.append(Checkout(label, ref, commit, REPO))
            continue
        code = into / f"side-{i}"
        code.mkdir()
        sides.append(Checkout(label, ref, export(ref, code), code))
    return sides


def side_env(code: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with ``code`` as the folder Python imports from."""
    return {**(os.environ if env is None else env), "PYTHONPATH": str(code)}


def migrator(code: Path) -> Callable[[str], None]:
    """Migrates a database with the migrations of the checkout in ``code``."""

    def migrate(url: str) -> None:
        command = [sys.executable, "-m", "infra.migrate", "--database-url", url]
        subprocess.run(command, cwd=code, env=side_env(code), check=True, stdout=subprocess.DEVNULL)

    return migrate


def ingest_worker(label: str, code: Path, topic: str, env: dict[str, str], state: Path) -> System:
    """The ``ingest-rawticker`` worker of the checkout in ``code``, draining ``topic``."""
    name = label.replace("/", "_")  # a ref such as origin/main names files here
    log = state / f"worker-{name}.log"

    def start(url: str, tag: str) -> subprocess.Popen[bytes]:
        run_env = {
            **side_env(code, env),
            "DATABASE_URL": url,
            "CRYPTOVIZ_STATE_DIR": str(state / f"{name}-{tag}"),
        }
        command = [sys.executable, "-m", "flows.run", "ingest-rawticker", "--topic", topic,
                   "--metrics-port", str(free_port())]  # fmt: skip
        with log.open("ab") as out:
            return subprocess.Popen(command, cwd=code, env=run_env, stdout=out, stderr=out)

    return System(label, start, "", {}, log)
