"""The one way tests wait for something to happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.25,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy, and return that.

    Fails the test with ``what``, the last value seen and ``explain()`` (a log tail,
    say) after ``timeout`` seconds. A probe that raises fails the test at once: check
    liveness inside it (a process that died) so that a failure is reported, not
    waited out.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            more = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {value!r}){more}"
            )
        time.sleep(interval)
