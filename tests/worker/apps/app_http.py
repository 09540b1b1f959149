"""A queue for the HTTP and metrics tests (`gq worker app_http:q --http ...`): one
handler per outcome, so a short run gives every metric something to count."""

import asyncio
import os

import gq

q = gq.Queue(os.environ["GQ_TEST_DATA"], backoff_base=0.05, backoff_cap=0.1)


@q.handler("ok")
async def ok(job):
    await asyncio.sleep(job.payload.get("sleep", 0) if isinstance(job.payload, dict) else 0)
    return {"pid": os.getpid()}


@q.handler("flaky", max_attempts=3)
async def flaky(job):
    if job.attempt < 2:
        raise gq.TemporaryError(f"upstream said 503 (attempt {job.attempt})")
    return {"pid": os.getpid()}


@q.handler("bad")
async def bad(job):
    raise gq.PermanentError("the invoice has no 'total'")


@q.handler("crash", max_attempts=2)
def crash(job):
    raise RuntimeError("handler bug: list index out of range")


@q.handler("slow", timeout=0.2, max_attempts=1)
async def slow(job):
    await asyncio.sleep(30)
