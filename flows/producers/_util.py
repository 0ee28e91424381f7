"""Small helpers shared by the producer sources."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class Backoff:
    """Capped exponential backoff with "equal jitter": a delay in [d/2, d], d = initial * 2^n.

    Half of the delay is fixed so successive retries surely slow down; the random
    half spreads many clients apart after a common outage.
    """

    def __init__(self, initial: float, cap: float, rng: random.Random | None = None) -> None:
        self._initial = initial
        self._cap = cap
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self._cap, self._initial * 2.0**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


def in_thread(fn: Callable[[], T], name: str) -> Future[T]:
    """Run ``fn`` on a daemon thread; its result or exception lands in the future.

    Daemon threads (unlike ``ThreadPoolExecutor``'s) never hold up process exit, so a
    request hanging on a dead server cannot keep a stopped worker alive.
    """
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to whoever reads the future
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
