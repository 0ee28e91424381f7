"""What every benchmark result records beside its figures, and how it is saved."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def provenance() -> dict[str, str]:
    """``machine``, ``date`` and ``commit`` of this run."""
    return {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
    }


def report(result: dict[str, Any], path: Path, *, write: bool) -> None:
    """Print ``result`` and, unless told not to, save it as ``path``."""
    text = json.dumps(result, indent=2)
    print(text)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
