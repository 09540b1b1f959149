"""A queue for the result-waiting tests (`gq worker app_results:q`); data dir or
PostgreSQL URL: $GQ_TEST_DATA."""

import asyncio
import os

import gq

q = gq.Queue(os.environ["GQ_TEST_DATA"])


@q.handler("add")
async def add(job):
    await asyncio.sleep(job.payload.get("sleep", 0))
    return job.payload["a"] + job.payload["b"]


@q.handler("fail")
async def fail(job):
    raise gq.PermanentError(f"cannot do {job.payload}")


@q.handler("flaky", max_attempts=1)
async def flaky(job):
    raise gq.TemporaryError("the upstream timed out")


@q.handler("wait")
async def wait(job):
    await asyncio.sleep(3600)


@q.handler("snoozy", max_attempts=1)
async def snoozy(job):
    """Snoozes its first two attempts: one attempt allowed, yet it completes."""
    if job.attempt < 3:
        raise gq.Snooze(0.1)
    return job.attempt
