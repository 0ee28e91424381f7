"""``bench.flow_threads``: reading threads from /proc and turning two samples into rates."""

from __future__ import annotations

import os
import threading

import pytest

from bench.flow_threads import TICKS, ThreadSample, parse_task, rates, sample, thread_label

STATUS = "Name:\ttimely:work-0\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\n"  # noqa: E501


@pytest.mark.parametrize(
    ("pid", "tid", "comm", "label"),
    [
        (10, 10, "python", "main"),  # the main thread by its id, whatever its name
        (10, 10, "timely:work-0", "main"),
        (10, 11, "python3.11", "python"),  # unnamed Python threads share one label
        (10, 12, "timely:send-1", "timely:send-1"),
        (10, 13, "rdk:broker1", "rdk:broker1"),
    ],
)
def test_threads_are_labelled_by_role(pid: int, tid: int, comm: str, label: str) -> None:
    assert thread_label(pid, tid, comm) == label


@pytest.mark.parametrize(
    ("comm", "utime", "stime", "label"),
    [
        ("timely:work-0", 250, 50, "timely:work-0"),
        ("odd) name (x", 0, 7, "odd) name (x"),  # a name with parentheses and spaces
    ],
)
def test_a_task_is_parsed_from_its_stat_and_status(
    comm: str, utime: int, stime: int, label: str
) -> None:
    # proc(5): pid (comm) state ppid ... utime stime are fields 14 and 15.
    stat = f"12 ({comm}) S 1 1 1 0 -1 4194368 100 0 0 0 {utime} {stime} 0 0 20 0 5 0"
    got = parse_task(10, 12, stat, STATUS)
    assert got == ThreadSample(label, (utime + stime) / TICKS, 1200, 34)


def test_rates_sum_threads_of_one_label_and_leave_out_threads_not_in_both_samples() -> None:
    before = {
        1: ThreadSample("main", 1.0, 100, 10),
        2: ThreadSample("python", 2.0, 0, 0),
        3: ThreadSample("python", 0.0, 50, 0),
        4: ThreadSample("gone", 5.0, 0, 0),
    }
    after = {
        1: ThreadSample("main", 1.5, 300, 30),
        2: ThreadSample("python", 3.0, 20, 2),
        3: ThreadSample("python", 1.0, 70, 0),
        5: ThreadSample("new", 9.0, 999, 999),
    }
    got = rates(before, after, 2.0)
    assert got == {
        "main": {"n": 1, "cpu_pct": 25.0, "vol_per_s": 100.0, "invol_per_s": 10.0},
        "python": {"n": 2, "cpu_pct": 100.0, "vol_per_s": 20.0, "invol_per_s": 1.0},
        "total": {"n": 3, "cpu_pct": 125.0, "vol_per_s": 120.0, "invol_per_s": 11.0},
    }


def test_a_live_process_is_sampled_thread_by_thread() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        got = sample(os.getpid())
    finally:
        stop.set()
        worker.join()
    assert got[os.getpid()].label == "main"
    assert worker.native_id in got
    assert all(s.cpu_s >= 0 and s.voluntary >= 0 for s in got.values())
