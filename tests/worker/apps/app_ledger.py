"""A queue for the multi-process test (`gq worker app_ledger:q`).

Every handler run appends "<id> start <monotonic ns> <pid>" and "<id> end ..."
lines to $GQ_TEST_LEDGER, each with ONE write(2) on an O_APPEND descriptor, so
lines from all processes interleave whole, in the order they happened.
"""

import asyncio
import os
import time

import gq

q = gq.Queue(os.environ["GQ_TEST_DATA"])
LEDGER = os.open(os.environ["GQ_TEST_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def note(job, event):
    os.write(LEDGER, f"{job.id} {event} {time.monotonic_ns()} {os.getpid()}\n".encode())


@q.handler("work")
async def work(job):
    note(job, "start")
    await asyncio.sleep(job.payload["sleep"])
    note(job, "end")
    return job.payload["n"]


@q.handler("work.sync")
def work_sync(job):
    note(job, "start")
    time.sleep(job.payload["sleep"])
    note(job, "end")
    return job.payload["n"]
