"""Scheduling figures, each beside its baseline from the same run.

    python -m benchmarks.scheduling [--quick] [--dir DIR] [--json OUT]

- dispatch: N ready no-op jobs drained by one worker (jobs/s) from a store that
  also holds 0, then 1,000,000 delayed jobs due tomorrow; the ratio should stay
  near 1 (delayed jobs live in their own index, read only at its head);
- dependencies: submit_many rate (batches of 1000) of jobs with 5 dependencies
  each (on unfinished jobs: they start pending) against jobs without.
"""

from __future__ import annotations

import os
import threading
import time

import gq
from benchmarks.baselines import bench_args, write_json
from benchmarks.drain import _wait_until


def dispatch(base: str, ready: int, delayed: int) -> float:
    q = gq.Queue(os.path.join(base, f"dispatch-{delayed}"))

    @q.handler("bench.noop")
    async def noop(job):
        return None

    tomorrow = time.time() + 86_400
    for start in range(0, delayed, 10_000):
        q.submit_many([{"type": "bench.noop", "run_at": tomorrow + i}
                       for i in range(start, min(delayed, start + 10_000))])
    for start in range(0, ready, 1000):
        q.submit_many([{"type": "bench.noop"} for _ in range(min(1000, ready - start))])
    worker = gq.Worker(q, concurrency=64)
    done = lambda: q.stats()["by_state"]["completed"] >= ready   # noqa: E731
    threading.Thread(target=lambda: (_wait_until(done, 900), worker.stop()), daemon=True).start()
    t = time.perf_counter()
    worker.run()
    rate = ready / (time.perf_counter() - t)
    q.close()
    return rate


def submit_with_dependencies(base: str, batches: int, deps: int) -> float:
    q = gq.Queue(os.path.join(base, f"deps-{deps}"))
    parents = [q.submit("bench.parent") for _ in range(deps)]
    batch = [{"type": "bench.child", "depends_on": parents} if deps else {"type": "bench.child"}
             for _ in range(1000)]
    t = time.perf_counter()
    for _ in range(batches):
        q.submit_many(batch)
    rate = batches * 1000 / (time.perf_counter() - t)
    q.close()
    return rate


def measure(base: str, quick: bool) -> dict:
    """Both figures with their same-run baselines (python -m benchmarks runs this)."""
    ready, delayed, batches = (5_000, 50_000, 5) if quick else (50_000, 1_000_000, 50)
    without = dispatch(base, ready, 0)
    with_delayed = dispatch(base, ready, delayed)
    plain = submit_with_dependencies(base, batches, 0)
    five = submit_with_dependencies(base, batches, 5)
    figures = {
        "dispatch_0_delayed_per_s": round(without),
        "dispatch_delayed_jobs": delayed,
        "dispatch_with_delayed_per_s": round(with_delayed),
        "dispatch_delayed_vs_none": round(with_delayed / without, 2),
        "submit_many_no_deps_per_s": round(plain),
        "submit_many_5_deps_per_s": round(five),
        "submit_5_deps_vs_none": round(five / plain, 2),
    }
    return figures


def main(argv=None) -> dict:
    args, base = bench_args(__doc__.splitlines()[0], argv)
    figures = measure(base, args.quick)
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
