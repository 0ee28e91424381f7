"""supervisord for a soak run: started on its config, then driven over XML-RPC."""

from __future__ import annotations

import contextlib
import http.client
import re
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any, cast

from infra._console import StackError
from infra._procs import die_with_parent


class Supervisor:
    """supervisord running ``conf``, driven over its XML-RPC socket (no supervisorctl forks)."""

    def __init__(self, conf: Path, state: Path, env: dict[str, str]) -> None:
        from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

        self.log = state / "logs" / "supervisord.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env=env,
            stdout=subprocess.DEVNULL,  # it logs to supervisord.log as well
            start_new_session=True,  # Ctrl-C reaches the harness only; it stops supervisord
            preexec_fn=die_with_parent,  # noqa: PLW1509 (only a prctl call, libc loaded already)
        )
        self._transport = partial(
            SupervisorTransport, None, None, f"unix://{state}/supervisor.sock"
        )

    def _rpc(self) -> Any:
        # A fresh transport per call: one whose request failed (socket not there yet)
        # refuses every later request.
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=self._transport()).supervisor

    def info(self) -> dict[str, dict[str, Any]]:
        rows = cast(list[dict[str, Any]], self._rpc().getAllProcessInfo())
        return {row["name"]: row for row in rows}

    def wait_running(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise StackError(f"supervisord exited ({self.proc.returncode}); see {self.log}")
            with contextlib.suppress(OSError, xmlrpc.client.Fault, http.client.HTTPException):
                states = {n: i["statename"] for n, i in self.info().items() if n in names}
                if all(states.get(n) == "RUNNING" for n in names):
                    return
            if time.monotonic() > deadline:
                raise StackError(f"workers not running after {timeout:.0f} s; see {self.log}")
            time.sleep(0.5)

    def start(self, names: list[str]) -> None:
        for name in names:
            self._rpc().startProcess(name, False)

    def stop(self, names: list[str], timeout: float = 30.0) -> None:
        for name in names:
            self._rpc().stopProcess(name, False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.info()
            if all(states[n]["statename"] in ("STOPPED", "EXITED", "FATAL") for n in names):
                return
            time.sleep(0.2)

    def spawns(self) -> Counter[str]:
        """Times each program was started (supervisord logs ``spawned: 'NAME' with pid N``)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return Counter(re.findall(r"spawned: '([^']+)' with pid", text))

    def shutdown(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
