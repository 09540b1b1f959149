"""A queue for the worker subprocess tests (`gq worker app_long:q`).

Data dir: $GQ_TEST_DATA. Each handler drops marker files <job id>.<event> in
$GQ_TEST_MARKERS (written whole, then renamed: a marker that exists is complete).
Queue options can be set from the environment: GQ_TEST_VISIBILITY (seconds).
"""

import asyncio
import os
import time

import gq

options = {}
if os.environ.get("GQ_TEST_VISIBILITY"):
    options["visibility_timeout"] = float(os.environ["GQ_TEST_VISIBILITY"])
q = gq.Queue(os.environ["GQ_TEST_DATA"], **options)
MARKERS = os.environ["GQ_TEST_MARKERS"]


def mark(job, event):
    path = os.path.join(MARKERS, f"{job.id}.{event}")
    with open(path + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {job.attempt} {time.time()}\n")
    os.replace(path + ".tmp", path)


@q.handler("sleep")
async def sleep(job):
    """Sleeps payload["seconds"]; marks started / cancelled / finished."""
    mark(job, f"started.{job.attempt}")
    try:
        await asyncio.sleep(job.payload["seconds"])
    except asyncio.CancelledError:
        mark(job, "cancelled")
        raise
    mark(job, "finished")
    return {"slept": job.payload["seconds"], "pid": os.getpid()}


@q.handler("sleep.sync")
def sleep_sync(job):
    """A sync handler blocked in time.sleep: it cannot be cancelled."""
    mark(job, f"started.{job.attempt}")
    time.sleep(job.payload["seconds"])
    mark(job, "finished")
    return {"slept": job.payload["seconds"], "pid": os.getpid()}


@q.handler("quick")
async def quick(job):
    mark(job, "finished")
    return {"echo": job.payload, "pid": os.getpid()}
