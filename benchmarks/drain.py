"""Worker figures, each beside its baseline from the same run.

    python -m benchmarks.drain [--quick] [--dir DIR] [--json OUT]

- drain: N no-op async jobs through one worker process (jobs/s), at the default
  concurrency 64 and at 256, beside the one-by-one durable submit rate measured
  in the same run;
- latency: submit-to-start at a steady rate from another process,
  coordinated-omission-safe: each job carries its *intended* send time, and
  latency is the handler's start minus that time (CLOCK_MONOTONIC is one clock
  for every process of the machine); beside it, the same rate through plain
  py-lmdb, two synced commits per job (store it, claim it), timed the same way.
  Both first run one second at the rate uncounted (WARMUP_S): a fresh store's
  first commits grow its file, and that start-up backlog is not the steady state;
- CPU-bound handlers (~5 ms of pure Python) drained by `gq worker --processes 2`
  against `--processes 1`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import gq
from benchmarks.baselines import bench_args, print_and_write, raw_two_commit_latency

HERE = os.path.dirname(os.path.abspath(__file__))
WARMUP_S = 1.0   # sent at the rate but not counted, before each latency run


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _wait_until(predicate, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(step)


def drain(base: str, n: int, concurrency: int = 64) -> dict:
    q = gq.Queue(os.path.join(base, f"drain{concurrency}"))

    @q.handler("bench.noop")
    async def noop(job):
        return None

    for start in range(0, n, 1000):
        q.submit_many([{"type": "bench.noop"} for _ in range(min(1000, n - start))])
    # the one-by-one durable submit rate of this same disk, same run
    one = 300
    t = time.perf_counter()
    for _ in range(one):
        q.submit("bench.other")
    one_rate = one / (time.perf_counter() - t)
    worker = gq.Worker(q, concurrency=concurrency)
    done = lambda: q.stats()["by_state"]["completed"] >= n   # noqa: E731
    threading.Thread(target=lambda: (_wait_until(done, 600), worker.stop()), daemon=True).start()
    t = time.perf_counter()
    worker.run()
    rate = n / (time.perf_counter() - t)
    q.close()
    return {f"drain_noop_c{concurrency}_per_s": round(rate),
            f"submit_one_by_one_per_s_c{concurrency}_run": round(one_rate),
            f"drain_c{concurrency}_vs_one_by_one": round(rate / one_rate, 1)}


# An open-loop generator: each submission fires at its intended time whether or
# not earlier ones were acknowledged (asubmit, so concurrent ones share a commit).
# A thread keeps the times (time.sleep is good to tens of microseconds; an event
# loop's timers round up to the next millisecond, which would add ~0.5 ms of the
# generator's own lateness to every figure) and hands each submission to the
# loop. Latency still counts from the intended time, lateness included.
SUBMITTER = """
import asyncio, sys, threading, time, gq
q = gq.Queue(sys.argv[1]); rate = float(sys.argv[2]); n = int(sys.argv[3])

async def main():
    loop = asyncio.get_running_loop()
    tasks = []
    def send(intended):
        tasks.append(loop.create_task(q.asubmit("bench.latency", intended)))
    def pace():
        start = time.monotonic() + 0.5
        for i in range(n):
            intended = start + i / rate
            time.sleep(max(0.0, intended - time.monotonic()))
            loop.call_soon_threadsafe(send, intended)
    pacer = threading.Thread(target=pace, daemon=True)
    pacer.start()
    await loop.run_in_executor(None, pacer.join)
    await asyncio.sleep(0)    # the last send callbacks
    await asyncio.gather(*tasks)

asyncio.run(main())
"""


def latency(base: str, rate: float, seconds: float) -> dict:
    path = os.path.join(base, f"latency{rate:g}")
    q = gq.Queue(path)
    started: list[tuple[float, float]] = []    # (intended send time, latency)

    @q.handler("bench.latency")
    async def record(job):
        started.append((job.payload, time.monotonic() - job.payload))

    n, warmup = int(rate * seconds), int(rate * WARMUP_S)
    worker = gq.Worker(q, concurrency=64)
    # the stores of the benchmarks before this one are still being written back:
    # flush them first, or that writeback lands in these commits' tails
    os.sync()
    proc = subprocess.Popen([sys.executable, "-c", SUBMITTER, path, str(rate),
                             str(warmup + n)])
    threading.Thread(target=lambda: (_wait_until(lambda: len(started) >= warmup + n,
                                                 seconds * 5 + 60),
                                     worker.stop()), daemon=True).start()
    worker.run()
    proc.wait()
    q.close()
    lat = [latency for _, latency in sorted(started)[warmup:]]
    at = f"latency_at_{rate:g}_per_s"
    figures = {f"{at}_jobs": n, **_percentiles(at, lat)}
    # the baseline, straight after on the same disk: two raw synced commits per job
    os.sync()
    raw = raw_two_commit_latency(base, rate, seconds, warmup_s=WARMUP_S)
    figures.update(_percentiles(f"raw_lmdb_two_commits_{at}", raw))
    figures[f"{at}_p99_vs_raw"] = round(figures[f"{at}_p99_ms"] /
                                        figures[f"raw_lmdb_two_commits_{at}_p99_ms"], 2)
    return figures


def _percentiles(name: str, seconds: list[float]) -> dict:
    ms = [x * 1000 for x in seconds]
    return {f"{name}_p50_ms": round(_percentile(ms, 0.50), 2),
            f"{name}_p99_ms": round(_percentile(ms, 0.99), 2),
            f"{name}_p999_ms": round(_percentile(ms, 0.999), 2),
            f"{name}_max_ms": round(max(ms), 2)}


def processes_drain(base: str, n: int, job_type: str, processes: int,
                    concurrency: int) -> float:
    """Jobs/s of `gq worker --processes N` draining n jobs of `job_type` (a
    handler of benchmarks.apps), from the worker's spawn to the last completion."""
    data = os.path.join(base, f"{job_type}-p{processes}-c{concurrency}")
    env = {**os.environ, "GQ_DATA": data, "PYTHONPATH": os.path.dirname(HERE)}
    q = gq.Queue(data)
    for start in range(0, n, 10_000):
        q.submit_many([{"type": job_type} for _ in range(min(10_000, n - start))])
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gq.cli", "worker", "benchmarks.apps:queue",
                             "--processes", str(processes), "--concurrency", str(concurrency),
                             "--log-level", "WARNING"], env=env)
    try:
        _wait_until(lambda: q.stats()["by_state"]["completed"] >= n, 600, step=0.01)
        return n / (time.perf_counter() - t)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        q.close()


def cpu_processes(base: str, n: int, concurrency: int = 1) -> dict:
    rates = {processes: processes_drain(base, n, "bench.cpu", processes, concurrency)
             for processes in (1, 2)}
    return {"cpu_5ms_1_process_per_s": round(rates[1]), "cpu_5ms_2_processes_per_s": round(rates[2]),
            "cpu_2_vs_1_processes": round(rates[2] / rates[1], 2)}


def measure(base: str, quick: bool) -> dict:
    """Every figure of this script (see the module docstring), sized by `quick`."""
    drain_n, lat_seconds, cpu_n = (5_000, 2.0, 200) if quick else (100_000, 10.0, 1_000)
    figures = {}
    figures.update(drain(base, drain_n, concurrency=64))    # the Worker default
    figures.update(drain(base, drain_n, concurrency=256))   # bigger batches per commit
    figures.update(latency(base, 1000.0, lat_seconds))
    figures.update(cpu_processes(base, cpu_n, concurrency=1))
    return figures


def main(argv=None) -> dict:
    args, base = bench_args(__doc__.splitlines()[0], argv)
    figures = measure(base, args.quick)
    return print_and_write(figures, args.json)


if __name__ == "__main__":
    main()
