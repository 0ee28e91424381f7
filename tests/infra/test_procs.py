"""Process-tree helpers of infra._procs, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infra._procs import cpu_seconds, descendants, process_table, tree_cpu_seconds
from tests._wait import wait_for


def test_descendants_finds_children_and_grandchildren_with_their_names() -> None:
    # sh starts a sleep and waits: the test process -> sh -> sleep.
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        for _ in range(100):
            table = process_table()
            below_us = descendants(os.getpid(), table)
            if any(table[p][1] == "sleep" for p in below_us if p in table):
                break
        assert table[shell.pid] == (os.getpid(), "sh")
        assert shell.pid in below_us
        sleeps = [p for p in descendants(shell.pid, table) if table[p][1] == "sleep"]
        assert len(sleeps) == 1
        assert table[sleeps[0]][0] == shell.pid
        assert descendants(sleeps[0], table) == []
    finally:
        for pid in descendants(shell.pid):
            os.kill(pid, 9)
        shell.kill()
        shell.wait()


def test_tree_cpu_counts_a_busy_grandchild_that_the_root_alone_does_not() -> None:
    # sh -> python burning CPU: the shell itself stays near zero.
    burn = (
        "import time\nend = time.process_time() + 0.6\n"
        "while time.process_time() < end: pass\ntime.sleep(30)"
    )
    shell = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "$0" & wait', burn])
    try:
        wait_for(
            lambda: tree_cpu_seconds(shell.pid) >= 0.5, 30, "the grandchild's CPU", interval=0.1
        )
        assert cpu_seconds(shell.pid) < 0.3
        assert tree_cpu_seconds(shell.pid) >= 0.5
    finally:
        for pid in descendants(shell.pid):
            os.kill(pid, 9)
        shell.kill()
        shell.wait()
    with pytest.raises(OSError):
        cpu_seconds(shell.pid)
    assert tree_cpu_seconds(shell.pid) == 0.0, "an ended process counts nothing"
