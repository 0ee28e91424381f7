"""Run a module under tracemalloc, dumping a heap snapshot every few seconds.

    python -m bench._heap DIR EVERY_S FRAMES MODULE [ARGS...]

For example ``python -m bench._heap /tmp/heap 60 10 flows.run producer-alerts``:
the worker runs as ``python -m flows.run producer-alerts`` would, and every
``EVERY_S`` seconds ``DIR/heap-<n>.tracemalloc`` holds what its Python heap holds
(``FRAMES`` frames per allocation) and ``DIR/heap.jsonl`` one line of totals (traced
bytes now and at peak, RSS). Compare two snapshots with :func:`compare`. Only for
profiling: tracemalloc slows the process down several times.
"""

from __future__ import annotations

import json
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def rss_mb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _dump_every(out: Path, every_s: float) -> None:
    started = time.monotonic()
    for index in range(1, 1_000_000):
        time.sleep(every_s)
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(str(out / f"heap-{index:03d}.tracemalloc"))
        traced, peak = tracemalloc.get_traced_memory()
        line = {"index": index, "t": round(time.monotonic() - started, 1),
                "traced_mb": round(traced / 2**20, 1), "peak_mb": round(peak / 2**20, 1),
                "rss_mb": round(rss_mb(), 1)}  # fmt: skip
        with (out / "heap.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")


def compare(old: Path, new: Path, *, top: int = 15, key: str = "traceback") -> str:
    """What grew from ``old`` to ``new``: the ``top`` allocation sites, biggest growth first."""
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen *>"),
    ]
    before = tracemalloc.Snapshot.load(str(old)).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(str(new)).filter_traces(ignore)
    lines: list[str] = []
    for stat in after.compare_to(before, key)[:top]:
        lines.append(
            f"{stat.size_diff / 2**20:+8.2f} MB {stat.count_diff:+9d} blocks "
            f"(now {stat.size / 2**20:7.2f} MB)"
        )
        lines += [f"    {frame}" for frame in stat.traceback.format()[-6:]]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--compare":
        print(compare(Path(sys.argv[2]), Path(sys.argv[3])))
        return
    out, every_s, frames, module, *args = sys.argv[1:]
    Path(out).mkdir(parents=True, exist_ok=True)
    tracemalloc.start(int(frames))
    threading.Thread(
        target=_dump_every, args=(Path(out), float(every_s)), name="heap-dump", daemon=True
    ).start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
