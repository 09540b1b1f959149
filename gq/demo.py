"""`gq demo`: the main job on the embedded default, start to finish.

Fills a fresh data dir with sample jobs — priorities, a delayed batch, a
dependency chain, a temporary failure that succeeds on retry, a permanent
failure, a timeout — runs a worker with a live progress bar, and prints a
summary with the commands to look at what happened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import tempfile
import time

import gq

PROGRESS_WIDTH = 30


def build_queue(path: str) -> gq.Queue:
    q = gq.Queue(path, backoff_base=0.2, backoff_cap=1.0)

    @q.handler("email.send")
    async def send_email(job):
        await asyncio.sleep(random.uniform(0.001, 0.01))
        return {"sent_to": job.payload["to"]}

    @q.handler("report.build")
    def build_report(job):                       # a sync handler: runs on a thread
        time.sleep(0.01)
        return {"rows": job.payload["rows"] * 2}

    @q.handler("etl.step")
    async def etl_step(job):
        await asyncio.sleep(0.02)
        return {"step": job.payload["step"], "ok": True}

    @q.handler("payment.capture", max_attempts=4)
    async def capture(job):
        if job.attempt < 3:                      # the provider is flaky twice
            raise gq.TemporaryError(f"provider returned 503 (attempt {job.attempt})")
        return {"captured": job.payload["amount"]}

    @q.handler("invoice.parse")
    async def parse_invoice(job):
        if "total" not in job.payload:
            raise gq.PermanentError("invoice has no 'total' field; fix the sender")
        return job.payload["total"]

    @q.handler("legacy.sync", timeout=0.5, max_attempts=1)
    async def legacy_sync(job):
        await asyncio.sleep(3600)                # hangs: the execution timeout ends it

    return q


def submit_samples(q: gq.Queue, n: int) -> int:
    jobs = [{"type": "email.send", "payload": {"to": f"user{i}@example.com"},
             "priority": i % 10} for i in range(n)]
    jobs += [{"type": "report.build", "payload": {"rows": i}, "delay": 1 + i % 3}
             for i in range(max(1, n // 10))]
    jobs += [
        {"type": "etl.step", "id": "etl-extract", "payload": {"step": "extract"}},
        {"type": "etl.step", "id": "etl-transform", "payload": {"step": "transform"},
         "depends_on": ["etl-extract"]},
        {"type": "etl.step", "id": "etl-load", "payload": {"step": "load"},
         "depends_on": ["etl-transform"], "priority": 9},
        {"type": "payment.capture", "payload": {"amount": 42}},
        {"type": "invoice.parse", "payload": {"vendor": "ACME"}},
        {"type": "legacy.sync", "payload": {}},
    ]
    q.submit_many(jobs)
    return len(jobs)


def _bar(done: int, total: int, started: float) -> str:
    filled = int(PROGRESS_WIDTH * done / total) if total else PROGRESS_WIDTH
    rate = done / max(time.monotonic() - started, 1e-9)
    return (f"\r[{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {done}/{total} finished"
            f"  {rate:,.0f} jobs/s ")


async def _run(q: gq.Queue, total: int, out) -> float:
    worker = gq.Worker(q, concurrency=32)
    live = getattr(out, "isatty", lambda: False)()
    serving = asyncio.create_task(worker.serve())
    started = time.monotonic()
    terminal = ("completed", "failed", "dead_letter", "cancelled")
    while True:
        counts = q.stats()["by_state"]
        done = sum(counts[s] for s in terminal)
        if live or done >= total:
            out.write(_bar(done, total, started))
            out.flush()
        if done >= total:
            break
        await asyncio.sleep(0.1)
    out.write("\n")
    elapsed = time.monotonic() - started
    worker.stop()
    await serving
    return elapsed


def run_demo(data: str | None, jobs: int = 300, out=sys.stdout) -> int:
    if jobs < 1:
        raise gq.ValidationError("--jobs must be at least 1")
    if data is None:
        data = tempfile.mkdtemp(prefix="gq-demo-")
    elif os.path.exists(os.path.join(data, "data.mdb")):
        raise gq.DataDirError(f"{data} already holds a gq store; the demo needs a fresh "
                              "data dir (omit --data to use a temporary one)")
    q = build_queue(data)
    # The summary reports every failure; the worker's own log lines would only
    # tear through the progress bar (`gq worker` shows them).
    worker_log = logging.getLogger("gq.worker")
    worker_log.addHandler(logging.NullHandler())
    worker_log.propagate = False
    try:
        total = submit_samples(q, jobs)
        out.write(f"gq demo: {total} sample jobs in {data}\n")
        try:
            import uvloop
            elapsed = uvloop.run(_run(q, total, out))
        except ImportError:  # pragma: no cover
            elapsed = asyncio.run(_run(q, total, out))
        _summary(q, total, elapsed, data, out)
    finally:
        q.close()
    return 0


def _summary(q: gq.Queue, total: int, elapsed: float, data: str, out) -> None:
    stats = q.stats()
    out.write(f"\nfinished {total} jobs in {elapsed:.1f}s ({total / elapsed:,.0f} jobs/s, "
              "including the delayed batch and the retries' back-off)\n\nby state:\n")
    for state, n in stats["by_state"].items():
        if n:
            out.write(f"  {state:<12} {n}\n")
    problems = q.list(state="failed") + q.list(state="dead_letter")
    if problems:
        out.write("\nfailures (state / category / message):\n")
        for job in problems:
            err = job.error
            out.write(f"  {job.id:<22} {job.type:<16} {job.state.value:<11} "
                      f"{err.category.value:<9} {err.message}\n")
    retried = [j for j in q.list(type="payment.capture")]
    for job in retried:
        out.write(f"\n{job.type} {job.id}: {job.state.value} after {job.attempts} attempts "
                  "(temporary failures retried with back-off)\n")
    flag = f" --data {data}"
    out.write(f"\ndata lives in {data}\nlook around:\n"
              f"  gq stats{flag}\n"
              f"  gq list --state dead_letter{flag}\n"
              f"  gq inspect etl-load{flag}\n")
