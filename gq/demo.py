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

import orjson

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
    return (f"[{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {done}/{total} finished"
            f"  {rate:,.0f} jobs/s ")


class _FailureCounter(logging.Handler):
    """Counts failed attempts by category from the worker's failure log records
    (each carries `category`), so the summary can show retried failures too."""

    def __init__(self):
        super().__init__()
        self.by_category: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        category = getattr(record, "category", None)
        if category is not None:
            self.by_category[category] = self.by_category.get(category, 0) + 1


async def _run(q: gq.Queue, total: int, out, show_progress: bool) -> float:
    """Serve until every sample job has finished; return the seconds it took.
    On a terminal the bar redraws in place; otherwise a plain line per second."""
    worker = gq.Worker(q, concurrency=32)
    live = show_progress and getattr(out, "isatty", lambda: False)()
    serving = asyncio.create_task(worker.serve())
    started = last_line = time.monotonic()
    terminal = ("completed", "failed", "dead_letter", "cancelled")
    while True:
        counts = q.stats()["by_state"]
        done = sum(counts[s] for s in terminal)
        if live:
            out.write("\r" + _bar(done, total, started))
            out.flush()
        elif show_progress and (done >= total or time.monotonic() - last_line >= 1.0):
            last_line = time.monotonic()
            out.write(_bar(done, total, started).rstrip() +
                      f" ({counts['running']} running, {counts['scheduled']} waiting)\n")
        if done >= total or serving.done():
            break
        await asyncio.sleep(0.1)
    if live:
        out.write("\n")
    elapsed = time.monotonic() - started
    worker.stop()
    await serving
    return elapsed


def run_demo(data: str | None, jobs: int = 300, out=sys.stdout, as_json: bool = False) -> int:
    """Run the demo in `data` (a new temporary dir if None); print the summary
    as text (or JSON). Returns the exit status."""
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
    failures = _FailureCounter()
    saved = worker_log.propagate, worker_log.level
    worker_log.addHandler(failures)
    worker_log.propagate = False
    worker_log.setLevel(logging.INFO)
    try:
        total = submit_samples(q, jobs)
        if not as_json:
            out.write(f"gq demo: {total} sample jobs in {data}\n")
        try:
            import uvloop
            elapsed = uvloop.run(_run(q, total, out, not as_json))
        except ImportError:  # pragma: no cover
            elapsed = asyncio.run(_run(q, total, out, not as_json))
        summary = summarize(q, total, elapsed, data, failures.by_category)
    finally:
        worker_log.removeHandler(failures)
        worker_log.propagate, worker_log.level = saved
        q.close()
    if as_json:
        out.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        write_summary(summary, out)
    return 0


def summarize(q: gq.Queue, total: int, elapsed: float, data: str,
              failed_attempts: dict[str, int]) -> dict:
    """What the demo did, as data (the text summary and `--json` both show it)."""
    stats = q.stats()
    problems = q.list(state="failed") + q.list(state="dead_letter")
    retried = [j for j in q.list(type="payment.capture")]
    flag = f" --data {data}"
    dead = [j.id for j in problems if j.state is gq.State.DEAD_LETTER]
    commands = [f"gq stats{flag}", f"gq list --state dead_letter{flag}",
                f"gq list --state failed{flag}", f"gq inspect etl-load{flag}"]
    if dead:
        commands += [f"gq inspect {dead[0]}{flag}", f"gq retry --dead-letter{flag}"]
    return {
        "data": data,
        "jobs": total,
        "elapsed_seconds": round(elapsed, 3),
        "jobs_per_second": round(total / elapsed, 1),
        "by_state": {state: n for state, n in stats["by_state"].items() if n},
        "by_type": stats["by_type"],
        "failed_attempts_by_category": dict(sorted(failed_attempts.items())),
        "failures": [{"id": j.id, "type": j.type, "state": j.state.value,
                      "category": j.error.category.value, "message": j.error.message}
                     for j in problems],
        "retried": [{"id": j.id, "type": j.type, "state": j.state.value,
                     "attempts": j.attempts} for j in retried],
        "commands": commands,
    }


def write_summary(s: dict, out) -> None:
    out.write(f"\nfinished {s['jobs']} jobs in {s['elapsed_seconds']:.1f}s "
              f"({s['jobs_per_second']:,.0f} jobs/s, including the delayed batch and the "
              "retries' back-off)\n\nby state:\n")
    for state, n in s["by_state"].items():
        out.write(f"  {state:<12} {n:>5}\n")
    out.write("\nfailed attempts by category:\n")
    for category, n in s["failed_attempts_by_category"].items():
        out.write(f"  {category:<12} {n:>5}\n")
    if s["failures"]:
        out.write("\njobs that did not complete (state / category / message):\n")
        width = max(len(f["id"]) for f in s["failures"])
        for f in s["failures"]:
            out.write(f"  {f['id']:<{width}}  {f['type']:<15} {f['state']:<11} "
                      f"{f['category']:<9} {f['message']}\n")
    for job in s["retried"]:
        out.write(f"\n{job['type']} {job['id']}: {job['state']} after {job['attempts']} "
                  "attempts (temporary failures retried with back-off)\n")
    out.write(f"\ndata lives in {s['data']}\nlook around:\n")
    for command in s["commands"]:
        out.write(f"  {command}\n")
