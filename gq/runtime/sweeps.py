"""The scheduling chores every worker does on its heartbeat: dead-letter jobs
past their lifetime, and keep the blocked-jobs and depth-warning gauges right.

Cheap when there is nothing to do: one read of the head of the expiry index
and two counter reads per tick. The reads run on a thread (on PostgreSQL each
is a round trip), the expiry through the store's coroutine twin: nothing here
blocks the worker's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gq._core.states import STATE_NAMES
from gq.backpressure import depth_of
from gq.metrics import JOBS_BLOCKED, JOBS_DEAD_LETTERED

log = logging.getLogger("gq.lifetime")

EXPIRE_BATCH = 1000   # jobs dead-lettered per write transaction
BLOCKED_GAUGE_INTERVAL = 5.0   # seconds: on PostgreSQL the count is a recursive query
_blocked_read: dict[int, float] = {}   # id(store) -> monotonic time of the last count


async def sweep(queue, now: float | None = None) -> int:
    """Run one pass; returns how many jobs were dead-lettered for their lifetime."""
    store = queue.store
    now = time.time() if now is None else now
    expired = 0
    try:
        while (deadline := await asyncio.to_thread(store.next_expiry)) is not None \
                and deadline <= now:
            rows = await store.aexpire_lifetimes(now=now, limit=EXPIRE_BATCH)
            for job_id, job_type, was in rows:
                JOBS_DEAD_LETTERED.labels(type=job_type).inc()
                log.warning("job %s (%s) dead-lettered: its lifetime passed while it was "
                            "%s", job_id, job_type, STATE_NAMES[was],
                            extra={"job_id": job_id, "job_type": job_type})
            expired += len(rows)
            if not rows and await asyncio.to_thread(store.next_expiry) == deadline:
                break
        if time.monotonic() - _blocked_read.get(id(store), -BLOCKED_GAUGE_INTERVAL) \
                >= BLOCKED_GAUGE_INTERVAL:
            _blocked_read[id(store)] = time.monotonic()
            JOBS_BLOCKED.set(await asyncio.to_thread(store.blocked_count))
        queue._depth_watch.observe(depth_of(await asyncio.to_thread(store.counts)))
    except Exception as e:   # noqa: BLE001 - the heartbeat that calls this must go on
        log.error("lifetime sweep failed: %s", e)
    return expired

