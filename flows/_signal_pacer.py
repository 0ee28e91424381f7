"""Park the main thread of a clustered flow between Bytewax's signal checks.

In a Bytewax 0.21 cluster process (``cluster_main``, the ``-i/-a`` path), the worker
runs on a thread of its own while the main thread, with the GIL released, loops over
``thread::sleep(1 ms)`` and ``Python::with_gil(check_signals)`` until the worker
finishes (``src/run.rs``). Each check takes the GIL from the worker thread, a thousand
times a second: ~1,050 wake-ups of the main thread a second per process, each able to
preempt the worker (measured with ``bench.flow_threads``: 0.5-0.8 % of a core quiet,
and 228 involuntary switches of the worker a second against 90 without them;
docs/BENCHMARKS.md, "The main thread's signal loop"). A saving, not the cause of the
clustered stack's load. A single-process flow (``run_main``) checks signals on its own
worker thread and has no such loop.

We cannot change the loop, but ``check_signals`` runs Python's signal handlers on the
main thread, with the GIL held. :class:`SignalPacer` keeps one signal of its own
pending (``PACE_SIGNAL``, thread-directed to the main thread): its handler sleeps for
``period_s`` (the GIL released), then a thread of the pacer's makes the signal pending
again, so the loop turns about once per period instead of once per millisecond. What
the loop is for still works: a SIGINT arriving during the sleep interrupts it and its handler's
``KeyboardInterrupt`` leaves ``check_signals`` as before (Bytewax then tells the
worker to stop and joins it); SIGTERM keeps its default action; a worker that ends
(its peer gone, the flow done) is noticed after at most one period.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

T = TypeVar("T")

PACE_SIGNAL = signal.SIGURG
"""Ignored by default (a stray one after the pacer is gone does nothing), and unused
otherwise here: the kernel sends it only for out-of-band socket data to an owner set
with ``F_SETOWN``, which nothing in a flow process does."""

DEFAULT_PERIOD_S = 0.1
"""How long the main thread stays parked per turn of Bytewax's loop: ten checks a
second instead of a thousand, and a finished worker joined at most 0.1 s late."""


FIRST_KICK_S = 0.01
"""Until the first kick Bytewax's loop turns every millisecond."""


class SignalPacer:
    """While :meth:`run` runs, Bytewax's main-thread loop turns about once per ``period_s``.

    Two halves: the handler of :data:`PACE_SIGNAL` parks the main thread for a period
    and reports the turn; a *kicker* thread, on each report, makes the signal pending
    on the main thread again (thread-directed, :func:`signal.pthread_kill`), to be
    handled by Bytewax's next check. The handler cannot make it pending itself: the
    interpreter would handle it again before the handler returned, recursing.
    ``sleep`` and ``kick`` are for tests.
    """

    def __init__(
        self,
        period_s: float = DEFAULT_PERIOD_S,
        *,
        sleep: Callable[[float], None] = time.sleep,
        kick: Callable[[], None] | None = None,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, not {period_s}")
        self.period_s = period_s
        self.active = False
        self.turns = 0
        """How many times the handler parked the main thread."""
        self._sleep = sleep
        self._kick = kick if kick is not None else _kick_main_thread
        self._turned = threading.Event()
        self._in_turn = False

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        """The signal handler (main thread, GIL held): park one period, report the turn.

        A SIGINT during the sleep interrupts it, and its ``KeyboardInterrupt`` leaves
        through here to Bytewax's check, as it would have without the pacer. A kick
        handled inside a turn (the interpreter checks for signals between the
        handler's own calls, should the kicker get the GIL that soon) only asks for
        the next: turns never nest.
        """
        if not self.active:
            return  # after the call: nothing asks for another turn
        if self._in_turn:
            self._turned.set()
            return
        self._in_turn = True
        try:
            self._sleep(self.period_s)
            self.turns += 1
            self._turned.set()
        finally:
            self._in_turn = False

    def kicker(self) -> None:
        """The kicker thread's body: a first kick soon after the start, then one kick per
        reported turn. (Handled before the main thread is inside the call, a kick parks
        the start-up for a period, once.)"""
        self._turned.wait(FIRST_KICK_S)
        while self.active:
            self._kick()
            self._turned.wait()
            self._turned.clear()

    def run(self, call: Callable[[], T]) -> T:
        """``call()`` (which enters ``cluster_main``) with the loop paced; main thread only.

        The interpreter may run the handler once after the call returns, before
        ``active`` is cleared: the process then ends at most one period later.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal checks can be paced only from the main thread")
        previous = signal.signal(PACE_SIGNAL, self.handle)
        self.active = True
        kicker = threading.Thread(target=self.kicker, name="signal-pacer", daemon=True)
        kicker.start()
        try:
            return call()
        finally:
            self.active = False
            self._turned.set()  # release the kicker
            kicker.join()
            signal.signal(PACE_SIGNAL, previous)


def _kick_main_thread() -> None:
    signal.pthread_kill(threading.main_thread().ident or 0, PACE_SIGNAL)
