"""Process-tree helpers of infra._procs, on real processes."""

from __future__ import annotations

import os
import subprocess

from infra._procs import descendants, process_table


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
