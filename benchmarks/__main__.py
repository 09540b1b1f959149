"""The whole suite: every throughput, latency, restart and memory figure, each
beside its baseline from the same run, in one table and one JSON file.

    python -m benchmarks [--quick | --full] [--dir DIR] [--json OUT]

--quick (CI smoke, ~30 s) and --full (the published figures, ~3 min; the
default) run the same measurements at different sizes. The pieces are the scripts
beside this file (store_throughput, drain, restart, scheduling); run one alone to
iterate on it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time

from benchmarks import drain, restart, scheduling, store_throughput
from benchmarks.baselines import write_json
from benchmarks.test_core_bench import make_jobs, run_heapq, run_ready_heap

LATENCY_RATES = (200.0, 1000.0)


def machine(data_dir: str) -> dict:
    import lmdb

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "py_lmdb": lmdb.__version__, "platform": platform.platform(),
            "data_dir": os.path.abspath(data_dir),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def heap_figures(n: int) -> dict:
    """ReadyHeap vs heapq, push then pop n jobs (best of 3)."""
    ids, prios = make_jobs(n)
    best = {}
    for name, fn in (("ready_heap", run_ready_heap), ("heapq", run_heapq)):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn(ids, prios)
            times.append(time.perf_counter() - t)
        best[name] = min(times)
    return {"heap_jobs": n, "ready_heap_push_pop_s": round(best["ready_heap"], 3),
            "heapq_push_pop_s": round(best["heapq"], 3),
            "ready_heap_vs_heapq": round(best["heapq"] / best["ready_heap"], 2)}


def run(base: str, quick: bool) -> dict:
    """Every figure, section by section (each section's own keys)."""
    f: dict = {}
    f.update(heap_figures(100_000 if quick else 1_000_000))
    f.update(store_throughput.measure(base, quick))
    f.update(drain.drain(base, 5_000 if quick else 100_000, concurrency=64))
    drain_n, cpu_n = (2_000, 200) if quick else (50_000, 1_000)
    f["drain_noop_1_process_cli_per_s"] = round(
        drain.processes_drain(base, drain_n, "bench.noop", 1, 64))
    f["drain_noop_2_processes_cli_per_s"] = round(
        drain.processes_drain(base, drain_n, "bench.noop", 2, 64))
    f.update(drain.cpu_processes(base, cpu_n, concurrency=1))
    for rate in LATENCY_RATES:
        f.update(drain.latency(base, rate, 2.0 if quick else 10.0))
    f.update(restart.measure(base, 20_000 if quick else 1_000_000))
    f.update(scheduling.measure(base, quick))
    return f


def _ratio(a, b):
    return f"{a / b:.2f}x" if a and b else ""


def table(f: dict) -> list[tuple[str, str, str, str]]:
    """(figure, value, baseline, ratio) rows."""
    rows = [
        (f"ReadyHeap push+pop {f['heap_jobs']:,}", f"{f['ready_heap_push_pop_s']:.3f} s",
         f"heapq {f['heapq_push_pop_s']:.3f} s", f"{f['ready_heap_vs_heapq']:.2f}x faster"),
        ("disk fdatasync", f"{f['fsync_per_s']:,}/s", "", ""),
        ("raw py-lmdb put + synced commit", f"{f['raw_lmdb_commits_per_s']:,}/s",
         f"fdatasync {f['fsync_per_s']:,}/s",
         _ratio(f["raw_lmdb_commits_per_s"], f["fsync_per_s"])),
        ("submit, one by one (durable)", f"{f['submit_one_by_one_per_s']:,}/s",
         f"raw py-lmdb {f['raw_lmdb_commits_per_s']:,}/s", f"{f['submit_vs_raw_lmdb']:.2f}x"),
        ("asubmit, 64 concurrent callers", f"{f['asubmit_64_callers_per_s']:,}/s",
         f"raw py-lmdb {f['raw_lmdb_commits_per_s']:,}/s",
         _ratio(f["asubmit_64_callers_per_s"], f["raw_lmdb_commits_per_s"])),
        ("submit_many, 1,000 per batch", f"{f['submit_many_1000_per_s']:,}/s",
         f"raw py-lmdb {f['raw_lmdb_commits_per_s']:,}/s",
         _ratio(f["submit_many_1000_per_s"], f["raw_lmdb_commits_per_s"])),
        ("drain no-op, 1 process (Worker, c=64)", f"{f['drain_noop_c64_per_s']:,}/s",
         f"one-by-one submit {f['submit_one_by_one_per_s_c64_run']:,}/s",
         f"{f['drain_c64_vs_one_by_one']:.1f}x"),
        ("drain no-op, gq worker --processes 2", f"{f['drain_noop_2_processes_cli_per_s']:,}/s",
         f"--processes 1 {f['drain_noop_1_process_cli_per_s']:,}/s",
         _ratio(f["drain_noop_2_processes_cli_per_s"], f["drain_noop_1_process_cli_per_s"])),
        ("drain 5 ms CPU handlers, --processes 2", f"{f['cpu_5ms_2_processes_per_s']:,}/s",
         f"--processes 1 {f['cpu_5ms_1_process_per_s']:,}/s",
         f"{f['cpu_2_vs_1_processes']:.2f}x"),
    ]
    for rate in LATENCY_RATES:
        at = f"latency_at_{rate:g}_per_s"
        rows.append((f"submit-to-start at {rate:,.0f}/s (p50/p99/p999)",
                     f"{f[at + '_p50_ms']:.1f}/{f[at + '_p99_ms']:.1f}/"
                     f"{f[at + '_p999_ms']:.1f} ms",
                     f"raw py-lmdb, 2 commits/job: {f['raw_lmdb_two_commits_' + at + '_p50_ms']:.1f}/"
                     f"{f['raw_lmdb_two_commits_' + at + '_p99_ms']:.1f}/"
                     f"{f['raw_lmdb_two_commits_' + at + '_p999_ms']:.1f} ms",
                     f"p99 {f[at + '_p99_vs_raw']:.2f}x"))
    rows += [
        (f"restart, {f['restart_jobs_in_store']:,} jobs: spawn to first start",
         f"{f['restart_spawn_to_first_start_s']:.2f} s", "target <= 3 s", ""),
        ("  of which: interpreter + import", f"{f['restart_interpreter_and_import_s']:.2f} s",
         "", ""),
        ("  of which: Queue open + recovery scan",
         f"{f['restart_queue_open_s'] + f['restart_recovery_scan_s']:.3f} s", "", ""),
        ("  of which: ready feed into the heap", f"{f['restart_heap_load_s']:.2f} s",
         f"raw py-lmdb scan {f['restart_raw_lmdb_ready_scan_s']:.2f} s",
         f"{f['heap_load_vs_raw_ready_scan']:.1f}x"),
        ("RSS per pending job (worker, own memory)",
         f"{f['rss_anon_bytes_per_pending_job']:.0f} B",
         f"heapq tuple {f['heapq_rss_bytes_per_job']:.0f} B",
         f"{f['rss_anon_vs_heapq']:.2f}x"),
        ("  + mapped data-file pages", f"{f['rss_file_bytes_per_pending_job']:.0f} B",
         "target <= 200 B total", f"{f['rss_bytes_per_pending_job']:.0f} B total"),
        ("disk per pending job", f"{f['disk_bytes_per_job']:.0f} B",
         f"its record {f['mean_record_bytes']:.0f} B", f"{f['disk_vs_record']:.2f}x"),
        (f"drain beside {f['dispatch_delayed_jobs']:,} delayed jobs",
         f"{f['dispatch_with_delayed_per_s']:,}/s",
         f"no delayed jobs {f['dispatch_0_delayed_per_s']:,}/s",
         f"{f['dispatch_delayed_vs_none']:.2f}x"),
        ("submit_many, 5 dependencies per job", f"{f['submit_many_5_deps_per_s']:,}/s",
         f"no dependencies {f['submit_many_no_deps_per_s']:,}/s",
         f"{f['submit_5_deps_vs_none']:.2f}x"),
    ]
    return rows


def print_table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("figure", "value", "baseline (same run)", "ratio")
    widths = [max(w, len(h)) for w, h in zip(widths, head)]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (CI smoke, ~30 s)")
    size.add_argument("--full", action="store_true",
                      help="published sizes, 1,000,000-job restart (the default)")
    parser.add_argument("--dir", help="where the stores go: put it on the disk you care "
                                      "about (default: a temp dir in .)")
    parser.add_argument("--json", help="write every figure, the machine and the load here")
    parser.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    args = parser.parse_args(argv)
    base = tempfile.mkdtemp(prefix="gq-bench-", dir=args.dir or ".")
    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        figures = run(base, args.quick)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    rows = table(figures)
    print_table(rows)
    info = machine(base)
    info.update(mode="quick" if args.quick else "full",
                load_before=[round(x, 2) for x in load_before],
                load_after=[round(x, 2) for x in os.getloadavg()],
                seconds=round(time.perf_counter() - start, 1))
    print(f"\n{info['cpus']} CPUs ({info['cpu']}), Python {info['python']}, py-lmdb "
          f"{info['py_lmdb']}; load average {info['load_before'][0]} before, "
          f"{info['load_after'][0]} after; {info['seconds']} s", file=sys.stderr)
    write_json(args.json, {"machine": info, "figures": figures,
                           "table": [dict(zip(("figure", "value", "baseline", "ratio"), r))
                                     for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
