"""gq's PostgreSQL store beside procrastinate, same server, same workload, one run:

    bash ci/postgres.sh python -m benchmarks.procrastinate_compare [--jobs N] [--json OUT]

(URL: --url, else $GQ_BENCH_POSTGRES, else $GQ_TEST_POSTGRES). procrastinate is not a
gq dependency: install it into the benchmark's environment (`pip install procrastinate`).

- concurrent durable enqueue: 64 callers in one process, gq `asubmit` (fresh schema)
  vs procrastinate `defer_async` of a no-op task (fresh database, its schema applied,
  a pool of 64 connections so no caller waits for one);
- drain: N no-op jobs enqueued beforehand (untimed), then 2 worker processes of each,
  timed from their launch until the database shows all N done. gq's workers run 64
  jobs at once (as in benchmarks.postgres); procrastinate's run its default of 1,
  which drained fastest here (4 about the same, 64 ~40% slower):
  --procrastinate-concurrency changes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import secrets
import subprocess
import sys
import time

import psycopg
from psycopg.conninfo import make_conninfo

import gq
from benchmarks.postgres import (HERE, _schema_url, concurrent, drain, rate_until_done,
                                 server_settings)

CALLERS = 64
CONCURRENCY = 64                 # gq worker
PROCRASTINATE_CONCURRENCY = 1    # procrastinate's own default, its best here
APP = "benchmarks.procrastinate_app.app"


# -- gq: each figure on a fresh schema, dropped afterwards -------------------------------

def gq_figure(server: str, step) -> float:
    schema, url = _schema_url(server)
    try:
        with gq.Queue(url) as q:
            return step(q, url)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


# -- procrastinate: each figure on a fresh database with its schema, dropped afterwards --

class ProcrastinateDatabase:
    def __init__(self, server: str):
        self.server = server
        self.name = f"procrastinate_bench_{secrets.token_hex(4)}"
        self.url = make_conninfo(server, dbname=self.name)

    def __enter__(self):
        from benchmarks.procrastinate_app import make_app
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name}")
        self.app = make_app(self.url)
        self.noop = self.app.tasks["bench.noop"]

        async def apply_schema():
            async with self.app.open_async():
                await self.app.schema_manager.apply_schema_async()
        asyncio.run(apply_schema())
        return self

    def __exit__(self, *exc):
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {self.name} WITH (FORCE)")


async def _defer_concurrently(bench, n: int) -> float:
    async with bench.app.open_async():
        async def caller(k):
            for _ in range(k):
                await bench.noop.defer_async()
        t = time.perf_counter()
        await asyncio.gather(*(caller(n // CALLERS) for _ in range(CALLERS)))
        return n // CALLERS * CALLERS / (time.perf_counter() - t)


def procrastinate_enqueue(server: str, n: int) -> float:
    with ProcrastinateDatabase(server) as bench:
        return asyncio.run(_defer_concurrently(bench, n))


def _succeeded(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM procrastinate_jobs "
                            "WHERE status = 'succeeded'").fetchone()[0]


def procrastinate_drain(server: str, n: int, concurrency: int) -> float:
    with ProcrastinateDatabase(server) as bench:
        async def prefill():
            async with bench.app.open_async():
                for start in range(0, n, 1000):
                    await bench.noop.batch_defer_async(*({} for _ in range(min(1000, n - start))))
        asyncio.run(prefill())
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE),
                   PROCRASTINATE_BENCH_URL=bench.url)
        t = time.perf_counter()
        workers = [subprocess.Popen(
            [sys.executable, "-m", "procrastinate", f"--app={APP}", "--log-level=warning",
             "worker", f"--concurrency={concurrency}"],
            env=env, cwd=os.path.dirname(HERE)) for _ in range(2)]
        return rate_until_done(workers, lambda: _succeeded(bench.url), n, t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("GQ_BENCH_POSTGRES")
                        or os.environ.get("GQ_TEST_POSTGRES"))
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs per figure (default 5000)")
    parser.add_argument("--procrastinate-concurrency", type=int,
                        default=PROCRASTINATE_CONCURRENCY,
                        help="jobs at once per procrastinate worker (default 1, its own)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    try:
        import procrastinate
    except ImportError:
        print("benchmarks.procrastinate_compare: procrastinate is not installed "
              "(it is no gq dependency): `pip install procrastinate` into this environment",
              file=sys.stderr)
        return 2
    if not args.url:
        print("benchmarks.procrastinate_compare: give --url or set GQ_BENCH_POSTGRES (e.g. run "
              "it under `bash ci/postgres.sh python -m benchmarks.procrastinate_compare`)",
              file=sys.stderr)
        return 2
    n = args.jobs
    server = server_settings(args.url)
    rows = {
        "enqueue_64_callers_per_s": (
            gq_figure(args.url, lambda q, url: concurrent(q, n, CALLERS)),
            procrastinate_enqueue(args.url, n)),
        "drain_2_workers_per_s": (
            gq_figure(args.url, lambda q, url: drain(q, url, n)),
            procrastinate_drain(args.url, n, args.procrastinate_concurrency)),
    }
    figures = {"server": server, "jobs": n,
               "procrastinate_concurrency": args.procrastinate_concurrency,
               "procrastinate": procrastinate.__version__,
               "load_average": [round(x, 2) for x in os.getloadavg()]}
    print(f"{'figure':<26} {'gq':>10} {'procrastinate':>14} {'ratio':>8}")
    for name, (ours, theirs) in rows.items():
        figures[name] = {"gq": round(ours), "procrastinate": round(theirs),
                         "ratio": round(ours / theirs, 1)}
        print(f"{name:<26} {ours:>10.0f} {theirs:>14.0f} {ours / theirs:>7.1f}x")
    print(f"server {server}, procrastinate {procrastinate.__version__}, {n} jobs per figure, "
          f"worker concurrency gq {CONCURRENCY} / procrastinate "
          f"{args.procrastinate_concurrency}, load average {figures['load_average']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
