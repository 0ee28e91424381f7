"""Drive the system's headless Chromium from a test, through playwright-core (npm).

``driver.mjs`` runs in Node and answers one JSON line per command; :class:`Browser`
is its Python end. Nothing here downloads a browser: Chromium is Debian's
``/usr/bin/chromium`` and playwright-core is installed by ``npm ci`` from the
committed lock file (``make test`` does both).
"""

from __future__ import annotations

import itertools
import json
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.mjs"
PLAYWRIGHT = HERE / "node_modules" / "playwright-core" / "package.json"
CHROMIUM = Path("/usr/bin/chromium")


def missing_prerequisites() -> str | None:
    """Why the browser tests cannot run here, or ``None``."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium; make test does it)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not PLAYWRIGHT.is_file():
        return f"playwright-core is not installed: npm ci --prefix {HERE} (make test does it)"
    return None


class BrowserError(AssertionError):
    """A driver command failed (the message carries Playwright's error)."""


class Browser:
    """One headless Chromium with one page, on a fresh profile directory."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self._profile = Path(tempfile.mkdtemp(prefix="cryptoviz-chromium-"))
        self._ids = itertools.count(1)
        self._proc = subprocess.Popen(
            ["node", str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.version = self.call(
            "launch",
            timeout=40,
            executablePath=str(CHROMIUM),
            userDataDir=str(self._profile),
            width=width,
            height=height,
        )

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip():
                self._replies.put(json.loads(line))
        self._replies.put(None)

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())

    def call(self, op: str, *, timeout: float = 30.0, **args: Any) -> Any:
        """Run one driver command and return its value; :class:`BrowserError` on failure."""
        ident = next(self._ids)
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"id": ident, "op": op, **args}) + "\n")
        self._proc.stdin.flush()
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"driver gave no answer to {op} in {timeout} s") from None
        if reply is None:
            raise BrowserError(f"driver exited during {op}: {' | '.join(self._stderr[-20:])}")
        assert reply["id"] == ident, reply
        if not reply["ok"]:
            raise BrowserError(f"{op} failed: {reply['error']}")
        return reply["value"]

    def goto(self, url: str) -> int | None:
        status: int | None = self.call("goto", url=url)
        return status

    def evaluate(self, expression: str) -> Any:
        return self.call("evaluate", expression=expression)

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Until ``expression`` is truthy in the page; returns its value."""
        return self.call(
            "waitFor", timeout=timeout + 5, expression=expression, ms=int(timeout * 1000)
        )

    def viewport(self, width: int, height: int) -> None:
        self.call("viewport", width=width, height=height)

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.call("screenshot", path=str(path), fullPage=full_page)
        return path

    def errors(self) -> list[str]:
        """Console errors, page errors and failed requests since the last call."""
        found: list[str] = self.call("errors")
        return found

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                self.call("close", timeout=15)
        except BrowserError:
            pass
        finally:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
