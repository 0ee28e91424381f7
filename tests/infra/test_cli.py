"""One entry-point helper and one exit-code scheme for every program."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest

import flows.registry
import flows.run
from api.errors import NotFound
from flows.ingest import build_ingest_flow
from flows.registry import WorkerSpec
from handlers import ConfigError, UnknownTopicError
from infra._console import StackError
from infra.cli import ExitCode, run_program
from infra.settings import SettingsError

REPO = Path(__file__).resolve().parents[2]


def _raise(error: BaseException) -> None:
    raise error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SettingsError("CRYPTOVIZ_X='y' is not an integer"), ExitCode.USAGE),
        (UnknownTopicError("no handler for topic 'nope'"), ExitCode.USAGE),
        (ConfigError("--to must be after --from"), ExitCode.USAGE),
        (StackError("java not found"), ExitCode.FAILED),
        (NotFound("unknown symbol"), ExitCode.FAILED),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    ],
)
def test_errors_become_one_line_and_their_exit_status(
    error: BaseException, code: ExitCode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_program("prog", lambda: _raise(error)) == code
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("prog: ")
    assert "Traceback" not in err


def test_an_unexpected_error_shows_its_traceback_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_program("prog", lambda: _raise(RuntimeError("boom"))) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "RuntimeError: boom" in err
    assert err.rstrip().endswith("prog: unexpected error (traceback above)")


def test_a_body_returns_its_own_status() -> None:
    assert run_program("prog", lambda: None) == ExitCode.OK
    assert run_program("prog", lambda: 1) == ExitCode.FAILED


def test_unknown_topic_does_not_escape_flows_run_as_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A worker registered for a topic no handler serves.
    spec = WorkerSpec(
        name="ingest-rawnothing",
        build=partial(build_ingest_flow, "rawnothing"),
        description="rawnothing -> nowhere",
    )
    monkeypatch.setitem(flows.registry.WORKERS, "ingest-rawnothing", spec)
    monkeypatch.setenv("CRYPTOVIZ_STATE_DIR", str(tmp_path))
    assert flows.run.main(["ingest-rawnothing"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("ingest-rawnothing: ")
    assert "rawnothing" in err.splitlines()[0]


def test_the_scheme_is_documented_once_for_operators() -> None:
    text = (REPO / "docs" / "DEPLOYMENT.md").read_text()
    table = text.split("### Exit statuses", 1)[1].split("\n\n", 3)[2]
    documented = [int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)]
    assert documented == [int(code) for code in ExitCode]


PROGRAM_PACKAGES = ("api", "flows", "infra", "spark_batch", "bench")
EXECS = {"infra/spark_cluster.py"}
"""Programs that replace themselves with another (os.execve): no Python error after it."""


def test_every_program_ends_through_run_program() -> None:
    """A ``python -m`` module (``__main__`` guard, not a ``_private`` helper a harness
    runs) that does not hand its body to ``run_program`` has its own exit codes."""
    programs = [
        path
        for package in PROGRAM_PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if "node_modules" not in path.parts
        and (path.name == "__main__.py" or not path.name.startswith("_"))
        and 'if __name__ == "__main__":' in path.read_text()
    ]
    assert len(programs) >= 25
    own = [
        str(path.relative_to(REPO)) for path in programs if "run_program(" not in path.read_text()
    ]
    assert sorted(set(own) - EXECS) == []
    assert set(own) >= EXECS, "stale exception"
