"""Where a clustered ingestion flow's CPU and context switches go, thread by thread.

    .venv/bin/python -m bench.flow_threads [--rate 2000] [--seconds 20] [--idle-s 20]
        [--rounds 2] [--shapes single,bytewax,paced] [--no-write]

One embedded Kafka broker and PostgreSQL; ``ingest-rawticker`` on a fresh topic of
two partitions and a fresh database, run as each *shape* in turn, alternated
``--rounds`` times:

- ``single``: one process (``run_main``: the worker on the main thread);
- ``bytewax``: a Bytewax cluster of two processes (``-i 0/1 -a ...``) with
  Bytewax's main-thread loop as it is (``--signal-check bytewax``);
- ``paced``: the same two processes with the loop paced (:mod:`flows._signal_pacer`).

For each: a producer at ``--rate`` ticker msgs/s until the first row is committed,
then ``--seconds`` measured under that load; the producer stopped and, once the
backlog is committed, ``--idle-s`` measured idle. Measured from ``/proc/<pid>/task/*``:
CPU (% of one core) and voluntary/involuntary context switches per second, per
process and per thread (the main thread by its id, the others by their names:
``timely:work-0`` and the threads it started, ``timely:work-0+``, i.e. the database
writer; Timely's ``timely:send-*``/``timely:recv-*`` network threads; librdkafka's
``rdk:*``; unnamed Python threads as ``python``).
``--contend N`` pins the flow's processes to CPU ``--cpu`` with N busy-looping processes
beside them: a run queue like the clustered stack's, where each GIL hand-over waits for
a thread to be scheduled (the loaded window then also says how far the flow kept up:
``rows_in_loaded_window``). ``--observe PID,...`` starts nothing and samples
processes already running (the clustered stack's flows) over ``--seconds``.
Results: printed, and written to bench/results/flow_threads.json
(``flow_threads-contend.json`` with ``--contend``, ``flow_threads-observed.json`` with
``--observe``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._results import provenance, report
from bench.ingest import count, new_database
from bench.scaling import Ingest, SteadyProducer
from infra.cli import run_program
from infra.stack import temporary_stack
from infra.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "flow_threads.json"
SHAPES = {"single": (1, ()), "bytewax": (2, ("--signal-check", "bytewax")), "paced": (2, ())}
"""shape -> (processes, extra flags of flows.run)."""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ThreadSample:
    label: str
    cpu_s: float
    voluntary: int
    involuntary: int


def thread_label(pid: int, tid: int, comm: str) -> str:
    """The main thread by its id; the others by name (Python's unnamed ones share theirs)."""
    if tid == pid:
        return "main"
    return "python" if comm.startswith("python") else comm


def parse_task(pid: int, tid: int, stat: str, status: str) -> ThreadSample:
    """One thread's sample from its ``/proc/<pid>/task/<tid>/stat`` and ``status`` texts."""
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5) (state): utime and stime are fields 14 and 15.
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    switches = dict(
        line.split(":", 1) for line in status.splitlines() if line.endswith(tuple("0123456789"))
    )
    return ThreadSample(
        thread_label(pid, tid, comm),
        cpu,
        int(switches.get("voluntary_ctxt_switches", "0")),
        int(switches.get("nonvoluntary_ctxt_switches", "0")),
    )


def sample(pid: int) -> dict[int, ThreadSample]:
    """Every live thread of ``pid`` (threads that end between reads are left out).

    A thread takes its creator's name (Linux): the threads a Timely worker started (the
    flow's database writer) are told from the worker, the first of that name, as
    ``<name>+``."""
    out: dict[int, ThreadSample] = {}
    for tid in sorted(int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()):
        task = Path(f"/proc/{pid}/task/{tid}")
        try:
            stat, status = (task / "stat").read_text(), (task / "status").read_text()
        except OSError:
            continue
        got = parse_task(pid, tid, stat, status)
        if got.label.startswith("timely:") and any(s.label == got.label for s in out.values()):
            got = ThreadSample(got.label + "+", got.cpu_s, got.voluntary, got.involuntary)
        out[tid] = got
    return out


def rates(
    before: dict[int, ThreadSample], after: dict[int, ThreadSample], seconds: float
) -> dict[str, dict[str, float]]:
    """Per thread label (threads of one name summed, ``n`` of them): CPU as % of a core
    and context switches per second, over threads alive at both samples."""
    out: dict[str, dict[str, float]] = {}
    for tid, end in after.items():
        start = before.get(tid)
        if start is None:
            continue
        row = out.setdefault(end.label, {"n": 0, "cpu_pct": 0.0, "vol_per_s": 0.0,
                                         "invol_per_s": 0.0})  # fmt: skip
        row["n"] += 1
        row["cpu_pct"] += 100 * (end.cpu_s - start.cpu_s) / seconds
        row["vol_per_s"] += (end.voluntary - start.voluntary) / seconds
        row["invol_per_s"] += (end.involuntary - start.involuntary) / seconds
    total = {"n": sum(r["n"] for r in out.values())}
    for key in ("cpu_pct", "vol_per_s", "invol_per_s"):
        total[key] = sum(r[key] for r in out.values())
    out["total"] = total
    return {k: {m: round(v, 1) for m, v in r.items()} for k, r in sorted(out.items())}


def window(pids: list[int], seconds: float) -> list[dict[str, dict[str, float]]]:
    before = [sample(pid) for pid in pids]
    started = time.monotonic()
    time.sleep(seconds)
    after = [sample(pid) for pid in pids]
    elapsed = time.monotonic() - started
    return [rates(b, a, elapsed) for b, a in zip(before, after, strict=True)]


def wait_rows(url: str, at_least: int, run: Ingest, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (done := count(url)) < at_least:
        run.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{done} rows after {timeout:.0f} s, {at_least} expected")
        time.sleep(0.2)
    return done


def one(shape: str, env: dict[str, str], admin: str, bootstrap: str, state: Path,
        args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    processes, extra = SHAPES[shape]
    topic = f"threads-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, (topic,), 2, 1)
    url = new_database(admin)
    burners: list[subprocess.Popen[bytes]] = []
    cpus = os.sched_getaffinity(0)
    if args.contend:
        # The flow's processes and the burners inherit this thread's one CPU.
        os.sched_setaffinity(0, {args.cpu})
    try:
        run = Ingest({**env, "DATABASE_URL": url}, topic, processes, state, extra)
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                   for _ in range(args.contend)]  # fmt: skip
    finally:
        os.sched_setaffinity(0, cpus)
    producer = SteadyProducer(bootstrap, topic, args.rate, 2)
    try:
        producer.start()
        wait_rows(url, 1, run, 120)
        time.sleep(2)
        rows0 = count(url)
        loaded = window([p.pid for p in run.procs], args.seconds)
        rows = count(url) - rows0
        producer.stop_event.set()
        producer.join(120)
        wait_rows(url, producer.sent, run, 120)
        time.sleep(2)
        idle = window([p.pid for p in run.procs], args.idle_s)
        run.check()
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        producer.stop_event.set()
        run.stop()
    return {"shape": shape, "rows_in_loaded_window": rows, "loaded": loaded, "idle": idle}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per shape and phase: medians over rounds of each process's total and main thread."""
    out: dict[str, Any] = {}
    for shape in dict.fromkeys(r["shape"] for r in runs):
        mine = [r for r in runs if r["shape"] == shape]
        for phase in ("loaded", "idle"):
            procs = len(mine[0][phase])
            for i in range(procs):
                key = f"{shape}/{phase}/process-{i}"
                out[key] = {
                    f"{thread}_{metric}": statistics.median(
                        r[phase][i].get(thread, {}).get(metric, 0.0) for r in mine
                    )
                    for thread in ("total", "main")
                    for metric in ("cpu_pct", "vol_per_s", "invol_per_s")
                }
    return out


def observe(pids: list[int], args: argparse.Namespace, load_before: tuple[float, ...]) -> int:
    """``--observe``: one window over processes something else runs (e.g. the clustered
    stack of `make up CLUSTER=1` or of the cluster chaos run), each with its command."""
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
                for pid in pids}  # fmt: skip
    windows = window(pids, args.seconds)
    for pid, got in zip(pids, windows, strict=True):
        busy = {k: v for k, v in got.items() if v["cpu_pct"] >= 0.3 or v["vol_per_s"] >= 50}
        print(f"{pid} {commands[pid][-90:]}\n    {busy}", flush=True)
    result = {
        "observed": [
            {"pid": pid, "command": commands[pid], "threads": got}
            for pid, got in zip(pids, windows, strict=True)
        ],
        "seconds": args.seconds,
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "command": "python -m bench.flow_threads --observe ... --seconds " + str(args.seconds),
        **provenance(),
    }
    path = RESULTS.with_name("flow_threads-observed.json")
    report(result, path, write=not args.no_write)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_threads")
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument(
        "--contend",
        type=int,
        default=0,
        help="N busy processes on the flow's CPU: a run queue as on a loaded machine",
    )
    parser.add_argument("--cpu", type=int, default=1, help="the CPU of --contend")
    parser.add_argument(
        "--observe",
        default=None,
        help="PID,PID,...: only sample these running processes for --seconds (start nothing)",
    )
    parser.add_argument("--no-write", action="store_true", help="don't update bench/results")
    args = parser.parse_args(argv)
    shapes = [s for s in args.shapes.split(",") if s]
    if unknown := set(shapes) - set(SHAPES):
        parser.error(f"unknown shapes {sorted(unknown)}; choose from {', '.join(SHAPES)}")
    load_before = os.getloadavg()
    if args.observe:
        return observe([int(pid) for pid in args.observe.split(",") if pid], args, load_before)
    runs: list[dict[str, Any]] = []
    with temporary_stack(embedded=True, prepare=False) as stack:
        env = {**stack.env(), "PYTHONPATH": str(REPO)}
        state = Path(tempfile.mkdtemp(prefix="cryptoviz-flow-threads-"))
        for round_ in range(args.rounds):
            # Alternate, and rotate which shape goes first.
            for shape in shapes[round_ % len(shapes) :] + shapes[: round_ % len(shapes)]:
                print(f"round {round_ + 1}: {shape} ...", flush=True)
                result = one(shape, env, stack.database_url, stack.bootstrap,
                             state / f"{round_}-{shape}", args)  # fmt: skip
                for phase in ("loaded", "idle"):
                    for i, proc in enumerate(result[phase]):
                        t, m = proc["total"], proc.get("main", {})
                        print(f"  {phase} process {i}: {t['cpu_pct']:.1f} % "
                              f"({t['vol_per_s']:.0f} + {t['invol_per_s']:.0f} cs/s); main "
                              f"{m.get('cpu_pct', 0):.1f} % ({m.get('vol_per_s', 0):.0f} + "
                              f"{m.get('invol_per_s', 0):.0f} cs/s)", flush=True)  # fmt: skip
                runs.append({"round": round_ + 1, **result})
    result = {
        "summary": summary(runs),
        "runs": runs,
        "rate": args.rate,
        "contend": args.contend,
        "seconds": args.seconds,
        "idle_s": args.idle_s,
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "command": "python -m bench.flow_threads " + " ".join(argv or sys.argv[1:]),
        **provenance(),
    }
    path = RESULTS.with_name("flow_threads-contend.json") if args.contend else RESULTS
    report(result, path, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(run_program("bench.flow_threads", main))
