"""What recording metrics costs a draining worker: the same drain with the
worker's recorder on and with its methods replaced by no-ops, alternating.

    python -m benchmarks.metrics_overhead [--quick] [--dir DIR] [--json OUT]

Each drain (N no-op async jobs, concurrency 64) runs in a fresh process; the
figures are the worker's CPU time per job (robust to other load on the
machine) and its wall drain rate, medians over the runs.
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

ONE_DRAIN = """
import os, sys, threading, time
import gq
from benchmarks.drain import _wait_until
base, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "off":
    from gq import observe
    R = observe.WorkerRecorder
    R.started = lambda self, record: None
    R.ran = lambda self, job_type, seconds: None
    R.completed = lambda self, per_type: None
    R.flush = lambda self, busy, force=False: None
q = gq.Queue(os.path.join(base, mode + str(time.monotonic_ns())))

@q.handler("bench.noop")
async def noop(job):
    return None

for start in range(0, n, 1000):
    q.submit_many([{"type": "bench.noop"} for _ in range(min(1000, n - start))])
worker = gq.Worker(q, concurrency=64)
done = lambda: q.stats()["by_state"]["completed"] >= n
threading.Thread(target=lambda: (_wait_until(done, 600), worker.stop()), daemon=True).start()
cpu, wall = time.process_time(), time.perf_counter()
worker.run()
print((time.process_time() - cpu) / n * 1e6, n / (time.perf_counter() - wall))
"""


def _median(values):
    return sorted(values)[len(values) // 2]


def main(argv=None) -> dict:
    from benchmarks.baselines import bench_args, write_json

    args, base = bench_args(__doc__.splitlines()[0], argv)
    n, runs = (5_000, 3) if args.quick else (30_000, 7)
    got = {"on": [], "off": []}
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    for i in range(runs):
        for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
            out = subprocess.run([sys.executable, "-c", ONE_DRAIN, base, str(n), mode],
                                 env=env, capture_output=True, text=True, check=True)
            cpu, rate = map(float, out.stdout.split())
            got[mode].append((cpu, rate))
            print(f"metrics {mode}: {cpu:.1f} us CPU per job, {rate:,.0f} jobs/s", flush=True)
    figures = {"jobs": n, "runs": runs}
    for mode, values in got.items():
        figures[f"cpu_us_per_job_{mode}"] = round(_median([c for c, _ in values]), 1)
        figures[f"drain_per_s_{mode}"] = round(_median([r for _, r in values]))
    figures["cpu_on_vs_off"] = round(figures["cpu_us_per_job_on"] /
                                     figures["cpu_us_per_job_off"], 3)
    figures["rate_on_vs_off"] = round(figures["drain_per_s_on"] /
                                      figures["drain_per_s_off"], 3)
    print(figures)
    write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
