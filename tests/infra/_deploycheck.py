"""Build and run ``tests/infra/deploycheck`` (Go): the real Compose loader, rulefmt, PromQL.

The Go module pins github.com/compose-spec/compose-go/v2 (what ``docker compose``
loads files with) and github.com/prometheus/prometheus v0.305.0 (= Prometheus
3.5.0, the image in infra/docker-compose.yml). The first build on a machine
downloads them from the Go module proxy and compiles (about a minute); later
builds come from Go's caches in well under a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SOURCE = Path(__file__).resolve().parent / "deploycheck"


def go_or_skip() -> str:
    """The ``go`` command; missing Go skips locally but fails in CI (where it is installed)."""
    go = shutil.which("go")
    if go is None:
        message = "Go is needed to validate the deployment files (tests/infra/deploycheck)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI must run these checks")
        pytest.skip(f"{message}: not on PATH")
    return go


def build(go: str, target: Path) -> Path:
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false -mod=readonly"}
    result = subprocess.run(
        [go, "build", "-trimpath", "-o", str(target), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"building tests/infra/deploycheck failed:\n{result.stdout}{result.stderr}")
    return target


@dataclass(frozen=True)
class Outcome:
    ok: bool
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass(frozen=True)
class DeployCheck:
    binary: Path

    def run(self, *args: str, stdin: str | None = None) -> Outcome:
        result = subprocess.run(
            [str(self.binary), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode not in (0, 1):
            pytest.fail(f"deploycheck {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
        return Outcome(result.returncode == 0, result.stdout, result.stderr)

    def compose(self, files: Path | tuple[Path, ...], *env_files: Path) -> Outcome:
        """Load one compose file, or several (later ones override, like ``-f a -f b``)."""
        chain = files if isinstance(files, tuple) else (files,)
        return self.run("compose", ",".join(map(str, chain)), *map(str, env_files))

    def rules(self, *files: Path) -> Outcome:
        return self.run("rules", *map(str, files))

    def promql(self, exprs: list[str]) -> list[dict[str, Any]]:
        outcome = self.run("promql", stdin=json.dumps(exprs))
        assert outcome.ok, outcome.stderr
        results: list[dict[str, Any]] = outcome.json()
        return results
