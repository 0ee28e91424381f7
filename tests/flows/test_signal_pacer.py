"""``flows._signal_pacer``: Bytewax's main-thread signal loop, paced, in this process.

The in-process tests run a real Bytewax ``cluster_main`` (one process, the same
main-thread loop as with ``-i/-a``) and read the main thread's context switches
from ``/proc``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from bench.flow_threads import sample
from flows._signal_pacer import PACE_SIGNAL, SignalPacer
from flows.run import paces_signal_checks
from tests._wait import wait_for


@pytest.mark.parametrize(("active", "slept", "turns"), [(False, [], 0), (True, [0.25], 1)])
def test_the_handler_parks_and_reports_a_turn_only_while_active(
    active: bool, slept: list[float], turns: int
) -> None:
    sleeps: list[float] = []
    pacer = SignalPacer(0.25, sleep=sleeps.append)
    pacer.active = active
    pacer.handle(PACE_SIGNAL, None)
    assert (sleeps, pacer.turns, pacer._turned.is_set()) == (slept, turns, bool(turns))


def test_a_kick_handled_inside_a_turn_only_asks_for_the_next() -> None:
    sleeps: list[float] = []
    pacer = SignalPacer(0.25, sleep=sleeps.append)
    pacer.active, pacer._in_turn = True, True
    pacer.handle(PACE_SIGNAL, None)
    assert (sleeps, pacer.turns, pacer._turned.is_set()) == ([], 0, True)


def test_the_kicker_kicks_once_per_turn_and_stops_with_the_call() -> None:
    kicks: list[None] = []
    pacer = SignalPacer(0.01, sleep=lambda _s: None, kick=lambda: kicks.append(None))
    pacer.active = True
    kicker = threading.Thread(target=pacer.kicker)
    kicker.start()
    for turn in range(1, 4):
        wait_for(lambda: len(kicks) == turn, 10, f"kick {turn}")  # noqa: B023
        pacer.handle(PACE_SIGNAL, None)  # the turn that kick would have caused
    wait_for(lambda: len(kicks) == 4, 10, "kick 4")
    pacer.active = False
    pacer._turned.set()
    kicker.join(10)
    assert not kicker.is_alive()
    assert len(kicks) == 4


@pytest.mark.parametrize("period", [0.0, -1.0])
def test_a_period_must_be_positive(period: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        SignalPacer(period)


@pytest.mark.parametrize(
    ("process_id", "signal_check", "paced"),
    [
        (None, "paced", False),  # run_main: the worker checks signals on the main thread
        (0, "paced", True),
        (1, "paced", True),
        (0, "bytewax", False),
    ],
)
def test_only_a_cluster_process_is_paced(
    process_id: int | None, signal_check: str, paced: bool
) -> None:
    assert paces_signal_checks(process_id, signal_check) is paced


def _main_thread_switches() -> int:
    main = threading.main_thread().native_id
    assert main is not None
    return sample(os.getpid())[main].voluntary


def _slow_flow(items: int, seconds_each: float, out: list[int]) -> Dataflow:
    def slowly(x: int) -> int:
        time.sleep(seconds_each)
        return x

    flow = Dataflow("paced")
    op.output("out", op.map("slow", op.input("in", flow, TestingSource(range(items))), slowly),
              TestingSink(out))  # fmt: skip
    return flow


def _run(flow: Dataflow, paced: bool) -> tuple[float, float]:
    """(seconds, main-thread voluntary context switches per second) of one run."""
    before, started = _main_thread_switches(), time.monotonic()
    if paced:
        SignalPacer(0.1).run(lambda: cluster_main(flow, None, 0))
    else:
        cluster_main(flow, None, 0)
    elapsed = time.monotonic() - started
    return elapsed, (_main_thread_switches() - before) / elapsed


def test_the_main_thread_wakes_far_less_and_the_flow_still_completes() -> None:
    previous = signal.getsignal(PACE_SIGNAL)
    unpaced_out: list[int] = []
    _, unpaced = _run(_slow_flow(40, 0.05, unpaced_out), paced=False)
    paced_out: list[int] = []
    elapsed, paced = _run(_slow_flow(40, 0.05, paced_out), paced=True)
    assert unpaced_out == paced_out == list(range(40))
    # Bytewax's loop: a wake-up per millisecond (~930/s here); paced: a few per turn
    # of a period (~35/s here, ~12/s in a flow process: bench.flow_threads).
    assert paced < 100, (paced, unpaced)
    assert paced * 5 < unpaced, (paced, unpaced)
    # A finished worker is noticed within a period or two: the pacer does not hold the
    # process (the bound is loose: the flow itself takes 2 s, more on a loaded machine).
    assert elapsed < 10, elapsed
    assert signal.getsignal(PACE_SIGNAL) == previous


def test_turns_do_not_nest_however_many_there_are() -> None:
    """More turns than Python's recursion limit: each turn returns to Bytewax's loop
    before the next (a handler that made its own signal pending again would be run
    again inside itself by the interpreter, and recurse until it failed)."""
    pacer = SignalPacer(0.001)
    enough = sys.getrecursionlimit() + 100

    def until_enough_turns(x: int) -> int:
        wait_for(lambda: pacer.turns >= enough, 120, f"{enough} turns", interval=0.01)
        return x

    out: list[int] = []
    flow = Dataflow("many_turns")
    op.output("out", op.map("wait", op.input("in", flow, TestingSource([7])), until_enough_turns),
              TestingSink(out))  # fmt: skip
    pacer.run(lambda: cluster_main(flow, None, 0))
    assert out == [7]
    assert pacer.turns >= enough


@pytest.fixture
def endless_flow() -> Dataflow:
    return _slow_flow(1_000_000, 0.01, [])


def test_sigint_still_stops_a_paced_cluster_process(endless_flow: Dataflow) -> None:
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.6, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        SignalPacer(0.1).run(lambda: cluster_main(endless_flow, None, 0))
    # Delivered while the main thread is parked, SIGINT interrupts the park: the
    # process stops within moments, not after the 10,000 s the flow would take.
    assert time.monotonic() - started < 10
    timer.join()
