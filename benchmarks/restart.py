"""Restart recovery, memory and disk of a store holding many pending jobs.

    python -m benchmarks.restart [--quick] [--dir DIR] [--json OUT]

The store is filled with N pending no-op jobs (N = 1,000,000; 20,000 with
--quick), a worker takes 64 of them and is SIGKILLed, then a fresh worker
process is started and timed from its spawn to its first handler start:
interpreter and import, Queue open, the recovery scan (which reclaims the 64),
reading the whole ready feed into the heap, and the first claim. That worker
reports its own memory at that moment, so the RSS per pending job is measured
in the process that holds them (its heap mirrors every ready job; payloads stay
on disk), less what the same start costs on a one-job store. RssAnon is the
process's own memory; RssFile the data file's pages it has mapped in (page
cache, shared and reclaimable). Baselines from the same run: a bare py-lmdb cursor over the same ready
rows, and a `heapq` of (priority, seq, id) tuples for the same ids.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import gq
from benchmarks.baselines import bench_args, print_and_write
from benchmarks.drain import _wait_until

HOLD_CONCURRENCY = 64

# A worker process. mode "hold": handlers never return (it is killed holding
# them). mode "first": prints its timings and memory when the first handler
# starts, then stops. Recovery and the first heap load are timed by wrapping
# them (benchmark instrumentation only).
WORKER = r"""
import asyncio, json, sys, time
spawned, path, mode = float(sys.argv[1]), sys.argv[2], sys.argv[3]
import gq, gq.runtime.worker as W, gq.runtime.dispatch as D
imported = time.monotonic()

def memory():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out

marks = {}
def timed(name, fn):
    def wrapper(*args, **kwargs):
        t = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            marks.setdefault(name, time.monotonic() - t)
    return wrapper

def atimed(name, fn):
    async def wrapper(*args, **kwargs):
        t = time.monotonic()
        try:
            return await fn(*args, **kwargs)
        finally:
            marks.setdefault(name, time.monotonic() - t)
    return wrapper

W.recover_at_start = atimed("recovery_s", W.recover_at_start)
D.HeapDispatcher.refresh = atimed("heap_load_s", D.HeapDispatcher.refresh)
q = gq.Queue(path)
opened = time.monotonic()
before = memory()

@q.handler("bench.noop")
async def noop(job):
    if mode == "hold":
        await asyncio.sleep(3600)
    elif not marks.get("reported"):
        marks["reported"] = True
        first = time.monotonic()
        print(json.dumps({"spawn_to_first_start_s": first - spawned,
                          "interpreter_and_import_s": imported - spawned,
                          "queue_open_s": opened - imported, **marks,
                          "heap_jobs": len(worker.dispatcher.heap), "before": before,
                          "after": memory()}), flush=True)
        worker.stop()

worker = gq.Worker(q, concurrency=64)
worker.run()
"""


def fill(path: str, n: int, batch: int = 10_000) -> float:
    """n pending no-op jobs (three priorities); returns the submit_many seconds."""
    q = gq.Queue(path)
    t = time.perf_counter()
    for start in range(0, n, batch):
        q.submit_many([{"type": "bench.noop", "priority": i % 3}
                       for i in range(min(batch, n - start))])
    seconds = time.perf_counter() - t
    q.close()
    return seconds


def _running(path: str) -> int:
    q = gq.Queue(path)
    try:
        return q.stats()["by_state"]["running"]
    finally:
        q.close()


def kill_holding_worker(path: str) -> None:
    """Start a worker, let it claim HOLD_CONCURRENCY jobs, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(time.monotonic()), path, "hold"])
    try:
        _wait_until(lambda: _running(path) >= HOLD_CONCURRENCY, 600, step=0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def timed_restart(path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, str(time.monotonic()), path, "first"],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"restart worker failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def raw_ready_scan(path: str) -> tuple[float, int]:
    """Seconds for a bare py-lmdb cursor over the ready rows (keys and values,
    no parsing): the floor for reading the feed. Returns (seconds, rows)."""
    import lmdb

    from gq.store.lmdb import keys as K

    env = lmdb.open(path, max_dbs=16, readonly=True, lock=False)
    try:
        db = env.open_db(b"index")
        t, n = time.perf_counter(), 0
        with env.begin() as txn, txn.cursor(db=db) as cur:
            if cur.set_range(K.READY):
                for key, _ in cur:
                    n += 1
        return time.perf_counter() - t, n
    finally:
        env.close()


HEAPQ_RSS = r"""
import heapq, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
n, tag = int(sys.argv[1]), sys.argv[2]
before = rss()
h = []
for i in range(n):
    heapq.heappush(h, (-(i % 3), i + 1, f"{tag}-{i + 1:012d}"))
print(json.dumps({"bytes_per_job": (rss() - before) / n}))
"""


def heapq_rss_per_job(n: int, sample_id: str) -> float:
    """RssAnon growth per entry of a heapq holding n (priority, seq, id) tuples
    with ids shaped like gq's."""
    tag = sample_id.rsplit("-", 1)[0]
    out = subprocess.run([sys.executable, "-c", HEAPQ_RSS, str(n), tag],
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout)["bytes_per_job"]


def store_sizes(path: str) -> dict:
    """Disk bytes of the data file, and the mean encoded record size (the
    record alone, without its index entries)."""
    q = gq.Queue(path)
    try:
        records = q.store.list(limit=1000)
        sample_id = records[0].id
        mean_record = sum(len(r.encode()) for r in records) / len(records)
    finally:
        q.close()
    st = os.stat(os.path.join(path, "data.mdb"))
    return {"disk_bytes": st.st_blocks * 512, "mean_record_bytes": mean_record,
            "sample_id": sample_id}


def measure(base: str, n: int) -> dict:
    # the memory a worker gains by starting at all (event loop, imports touched
    # after the Queue opened), measured on a one-job store and subtracted below
    tiny = os.path.join(base, "restart-tiny")
    fill(tiny, 1)
    t = timed_restart(tiny)
    startup = {k: t["after"][k] - t["before"][k] for k in t["before"]}
    path = os.path.join(base, "restart")
    fill_s = fill(path, n)
    sizes = store_sizes(path)
    kill_holding_worker(path)
    r = timed_restart(path)
    raw_s, raw_rows = raw_ready_scan(path)
    pending = r["heap_jobs"]
    grown = {k: r["after"][k] - r["before"][k] - startup[k] for k in r["before"]}
    heapq_bytes = heapq_rss_per_job(n, sizes["sample_id"])
    return {
        "restart_jobs_in_store": n,
        "restart_fill_submit_many_s": round(fill_s, 2),
        "restart_spawn_to_first_start_s": round(r["spawn_to_first_start_s"], 3),
        "restart_interpreter_and_import_s": round(r["interpreter_and_import_s"], 3),
        "restart_queue_open_s": round(r["queue_open_s"], 4),
        "restart_recovery_scan_s": round(r.get("recovery_s", float("nan")), 4),
        "restart_heap_load_s": round(r.get("heap_load_s", float("nan")), 3),
        "restart_raw_lmdb_ready_scan_s": round(raw_s, 3),
        "restart_raw_lmdb_ready_rows": raw_rows,
        "heap_load_vs_raw_ready_scan": round(r.get("heap_load_s", float("nan")) / raw_s, 1),
        "pending_jobs_held": pending,
        "rss_bytes_per_pending_job": round(grown["VmRSS"] / pending, 1),
        "rss_anon_bytes_per_pending_job": round(grown["RssAnon"] / pending, 1),
        "rss_file_bytes_per_pending_job": round(grown["RssFile"] / pending, 1),
        "heapq_rss_bytes_per_job": round(heapq_bytes, 1),
        "rss_anon_vs_heapq": round(grown["RssAnon"] / pending / heapq_bytes, 2),
        "disk_bytes_per_job": round(sizes["disk_bytes"] / n, 1),
        "disk_bytes_per_1m_jobs": round(sizes["disk_bytes"] / n * 1_000_000),
        "mean_record_bytes": round(sizes["mean_record_bytes"], 1),
        "disk_vs_record": round(sizes["disk_bytes"] / n / sizes["mean_record_bytes"], 2),
    }


def main(argv=None) -> dict:
    args, base = bench_args(__doc__.splitlines()[0], argv)
    figures = measure(base, 20_000 if args.quick else 1_000_000)
    return print_and_write(figures, args.json)


if __name__ == "__main__":
    main()
