"""The PostgreSQL store's figures, on a server you name (fsync and synchronous_commit
as the server has them; ci/postgres.sh starts one with both on):

    python -m benchmarks.postgres [--url postgresql://...] [--quick] [--json OUT]

(default URL: $GQ_BENCH_POSTGRES, else $GQ_TEST_POSTGRES). Each run uses a fresh
schema per figure, dropped afterwards.

- submit one by one (one transaction, one WAL flush each);
- 64 concurrent `asubmit` callers in one process (group commit: one multi-row
  INSERT per transaction), and the same from 2 processes at once;
- `submit_many` of 1,000-job batches;
- claims: ClaimQuota(64) transactions (FOR UPDATE SKIP LOCKED) in one process,
  from 20,000 ready jobs;
- drain: no-op jobs through 2 `gq worker` processes (concurrency 64 each).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from urllib.parse import quote

import psycopg

import gq
from gq.store.api import ClaimQuota

HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOAD = {"to": "user@example.com", "template": "welcome", "n": 42}

ASUBMIT = """
import asyncio, sys, time, gq
q = gq.Queue(sys.argv[1]); n = int(sys.argv[2]); callers = 64
async def caller(k):
    for _ in range(k):
        await q.asubmit("bench.email", {"n": 1})
async def main():
    await asyncio.gather(*(caller(n // callers) for _ in range(callers)))
asyncio.run(main())
q.close()
"""


def _schema_url(server: str) -> tuple[str, str]:
    schema = f"gq_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in server else "?"
    return schema, f"{server}{sep}options={quote(f'-csearch_path={schema}')}"


def one_by_one(q, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        q.submit("bench.email", PAYLOAD)
    return n / (time.perf_counter() - t)


def concurrent(q, n: int, callers: int = 64) -> float:
    async def caller(k):
        for _ in range(k):
            await q.asubmit("bench.email", PAYLOAD)

    async def main():
        await asyncio.gather(*(caller(n // callers) for _ in range(callers)))
    t = time.perf_counter()
    asyncio.run(main())
    return n // callers * callers / (time.perf_counter() - t)


def two_processes(url: str, n: int) -> float:
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", ASUBMIT, url, str(n // 2)])
             for _ in range(2)]
    for p in procs:
        assert p.wait() == 0
    return n // 128 * 128 / (time.perf_counter() - t)


def batches(q, n: int) -> float:
    t = time.perf_counter()
    for start in range(0, n, 1000):
        q.submit_many([{"type": "bench.claim", "payload": PAYLOAD}
                       for _ in range(min(1000, n - start))])
    return n / (time.perf_counter() - t)


def claims(q, n: int) -> float:
    store, got = q.store, 0
    t = time.perf_counter()
    while got < n:
        claimed = store.claim(ClaimQuota(64, {"bench.claim": None}), owner="bench",
                              lease_deadline=time.monotonic() + 60, now=time.time())
        if not claimed:
            break
        got += len(claimed)
    return got / (time.perf_counter() - t)


def drain(q, url: str, n: int) -> float:
    for start in range(0, n, 1000):
        q.submit_many([{"type": "bench.noop"} for _ in range(min(1000, n - start))])
    env = dict(os.environ, GQ_DATA=url, PYTHONPATH=os.path.dirname(HERE))
    t = time.perf_counter()
    workers = [subprocess.Popen([sys.executable, "-m", "gq.cli", "worker", "benchmarks.apps:queue",
                                 "--data", url, "--concurrency", "64", "--log-level", "WARNING"],
                                env=env, cwd=os.path.dirname(HERE)) for _ in range(2)]
    return rate_until_done(workers, lambda: q.stats()["by_state"]["completed"], n, t)


def rate_until_done(workers, done, n: int, t: float) -> float:
    """Poll done() until it reaches n, then stop the worker processes: n per second since t."""
    try:
        while done() < n:
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("a worker process exited before the queue was drained")
            time.sleep(0.05)
        return n / (time.perf_counter() - t)
    finally:
        for w in workers:
            w.terminate()
            w.wait(30)


def server_settings(url: str) -> dict:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("server_version", "fsync", "synchronous_commit")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("GQ_BENCH_POSTGRES")
                        or os.environ.get("GQ_TEST_POSTGRES"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not args.url:
        print("benchmarks.postgres: give --url or set GQ_BENCH_POSTGRES (e.g. run it under "
              "`bash ci/postgres.sh python -m benchmarks.postgres`)", file=sys.stderr)
        return 2
    scale = 0.2 if args.quick else 1.0
    figures = {}
    figures["server"] = server_settings(args.url)
    steps = [("submit_one_by_one_per_s", lambda q, url: one_by_one(q, int(500 * scale))),
             ("asubmit_64_callers_per_s", lambda q, url: concurrent(q, int(10_000 * scale))),
             ("asubmit_2_processes_x64_per_s",
              lambda q, url: two_processes(url, int(20_000 * scale))),
             ("submit_many_1000_per_s", lambda q, url: batches(q, int(20_000 * scale))),
             ("claim_quota64_per_s", lambda q, url: (batches(q, int(20_000 * scale)),
                                                     claims(q, int(20_000 * scale)))[1]),
             ("drain_2_workers_per_s", lambda q, url: drain(q, url, int(20_000 * scale)))]
    for name, step in steps:       # each on a fresh schema, dropped afterwards
        schema, url = _schema_url(args.url)
        try:
            with gq.Queue(url) as q:
                figures[name] = round(step(q, url))
        finally:
            with psycopg.connect(args.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    for name, value in figures.items():
        print(f"{name:>32}: {value}")
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
