"""Process-tree helpers of infra._procs, on real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import infra._procs
from infra._procs import (
    choosable_ports,
    cpu_seconds,
    descendants,
    ephemeral_ports,
    free_port,
    process_table,
    tree_cpu_seconds,
)
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32768\t60999\n", range(32768, 61000)),
        ("1024 65535", range(1024, 65536)),
        ("garbage", range(32768, 61000)),
        ("", range(32768, 61000)),
    ],
)
def test_ephemeral_ports_reads_the_kernel_range(tmp_path: Path, text: str, expected: range) -> None:
    path = tmp_path / "ip_local_port_range"
    path.write_text(text)
    assert ephemeral_ports(path) == expected


def test_ephemeral_ports_without_the_file_guesses_linux_default(tmp_path: Path) -> None:
    assert ephemeral_ports(tmp_path / "absent") == range(32768, 61000)


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [
        (range(32768, 61000), range(20000, 32768)),
        (range(49152, 65536), range(20000, 49152)),
        (range(1024, 65536), range(20000, 20000)),  # nothing below it to choose
    ],
)
def test_choosable_ports_lie_below_the_ephemeral_range(ephemeral: range, expected: range) -> None:
    assert choosable_ports(ephemeral) == expected


def test_free_port_gives_distinct_bindable_ports_the_kernel_does_not_hand_out() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports), "a port was given twice"
    ephemeral = ephemeral_ports()
    assert not any(p in ephemeral for p in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_port_skips_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        used = taken.getsockname()[1]
        # Only the used port and one more to choose from: the used one is never given.
        monkeypatch.setattr(infra._procs, "choosable_ports", lambda _e: range(used, used + 2))
        monkeypatch.setattr(infra._procs, "_given", set())
        assert free_port() == used + 1


def test_free_port_asks_the_kernel_when_nothing_lies_below_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(infra._procs, "ephemeral_ports", lambda: range(1024, 65536))
    port = free_port()
    assert port in ephemeral_ports()  # the real range: the kernel chose it
