"""tests/conftest.py: a SIGTERM'd test run still tears its fixtures down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests._wait import wait_for

REPO = Path(__file__).resolve().parent.parent

_SESSION = """
import pathlib, time, pytest

@pytest.fixture(scope="session")
def server():
    here = pathlib.Path(__file__).parent
    yield
    (here / "torn-down").write_text("yes")

def test_long(server):
    (pathlib.Path(__file__).parent / "started").write_text("yes")
    time.sleep(120)
"""


def test_sigterm_runs_the_session_fixtures_teardown(tmp_path: Path) -> None:
    (tmp_path / "test_long.py").write_text(_SESSION)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-c", os.devnull,
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", str(tmp_path / "test_long.py")],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        wait_for((tmp_path / "started").exists, 60, "the test to start", interval=0.1)
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
    finally:
        run.kill()
    assert (tmp_path / "torn-down").exists(), f"no teardown after SIGTERM:\n{out}"
    assert "KeyboardInterrupt" in out, out
    assert "SIGTERM" in out, out
    assert run.returncode != 0, "an interrupted run must not pass"
