"""Small process helpers shared by the embedded servers."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Loaded in the parent: the forked child must not load libraries (locks held by other threads).
_LIBC = (
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if sys.platform.startswith("linux")
    else None
)


def die_with_parent() -> None:
    """``preexec_fn``: have the kernel SIGTERM this child when its parent dies (Linux).

    A launcher killed with SIGKILL (or a test run cut short) then leaves no
    orphaned broker holding ports and memory.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_CHOSEN_LOW = 20000
"""Chosen ports start here: above the usual service ports (Kafka 9092, Spark 7077/8080...)."""
_given: set[int] = set()
# Not the module's generator: a test or a benchmark seeding it would have two
# processes walk the same ports in the same order.
_random = random.SystemRandom()


def ephemeral_ports(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    """The ports the kernel hands out for ``bind(0)`` and outgoing connections."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return range(32768, 61000)  # Linux's default, and a safe guess elsewhere
    return range(low, high + 1)


def choosable_ports(ephemeral: range) -> range:
    """Ports :func:`free_port` picks from: below the ephemeral range, above ``_CHOSEN_LOW``."""
    return range(_CHOSEN_LOW, max(_CHOSEN_LOW, ephemeral.start))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now, and that nothing else will be given.

    A port the kernel gave to ``bind(0)`` is an ephemeral one: between this call
    and the program binding it, any outgoing connection or ``bind(0)`` on the
    machine may take it (CI lost a run to Spark's metrics port taken so). Ports
    below the ephemeral range are only ever taken by someone asking for them, so
    one is picked there at random; this process never gives the same one twice.
    """
    candidates = choosable_ports(ephemeral_ports())
    for _ in range(200):
        if not candidates:
            break
        port = _random.choice(candidates)
        # Without SO_REUSEADDR: a port in TIME_WAIT is refused too, as a server
        # that does not set it would be.
        if port not in _given and port_is_free(port, host, reuse_address=False):
            _given.add(port)
            return port
    # Nothing below the ephemeral range (an odd ip_local_port_range): ask the kernel.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1", *, reuse_address: bool = True) -> bool:
    """Whether ``port`` binds on ``host`` now (``reuse_address``: as a server setting
    SO_REUSEADDR would, past connections still in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def sticky_ports(path: Path, names: tuple[str, ...]) -> dict[str, int]:
    """Ports remembered in ``path`` (reused across restarts while free), else new ones.

    Reusing the same ports keeps clients that cached an address (consumer
    groups, the API's pool) working after a restart of the embedded stack.
    """
    saved: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        saved = {k: int(v) for k, v in json.loads(path.read_text()).items()}
    ports: dict[str, int] = {}
    for name in names:
        port = saved.get(name)
        if port is None or not port_is_free(port) or port in ports.values():
            port = free_port()
        ports[name] = port
    path.write_text(json.dumps(ports))
    return ports


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; reaps it first if it is our exited child (a zombie)."""
    with contextlib.suppress(ChildProcessError):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, then SIGKILL if it is still alive after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def process_table() -> dict[int, tuple[int, str]]:
    """``pid -> (parent pid, command name)`` of every process now, from ``/proc``."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            # A process may end between the listing and the read.
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(entry.path, "stat").read_text()
                close = stat.rindex(")")  # the command name may itself hold ')'
                ppid = int(stat[close + 2 :].split()[1])
                table[int(entry.name)] = (ppid, stat[stat.index("(") + 1 : close])
    return table


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """Every process below ``root`` (children, grandchildren...), from ``table`` or now."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (``/proc``; OSError once it has ended)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def tree_cpu_seconds(pid: int) -> float:
    """:func:`cpu_seconds` of ``pid`` and of every descendant still alive."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):  # ended between the listing and the read
            total += cpu_seconds(p)
    return total


def tcp_server_side_owner(server_port: int, client_port: int, candidates: list[int]) -> int | None:
    """Which of ``candidates`` holds the server end of the local TCP connection from
    ``client_port`` to ``server_port`` (``/proc/net/tcp`` and each one's open files).

    Tells which worker of a pre-fork server (uvicorn ``--workers``) accepted a client.
    """
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    inode = next(
        (
            fields[9]
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
            if (fields := line.split())[1] == local and fields[2] == remote
        ),
        None,
    )
    if inode is None:
        return None
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) == f"socket:[{inode}]":
                        return pid
    return None
