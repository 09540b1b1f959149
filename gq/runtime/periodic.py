"""Periodic jobs: a cron expression or an interval, each occurrence submitted once.

    @q.periodic("*/5 * * * *", type="report.build", payload={"kind": "daily"})
    async def build_report(job): ...

    q.periodic(every=30, type="cache.refresh")     # handler registered elsewhere

Every worker serving the queue runs the scheduler (`PeriodicScheduler`). An
occurrence is submitted through `Store.submit_occurrence`, which checks and
moves the schedule's persisted cursor in the same write transaction as the
submit, so several workers on one data dir — and a worker before and after a
restart — create exactly one job per occurrence. The job's idempotency key is
`periodic:<name>:<occurrence, ISO 8601 UTC>`.

Occurrences are wall-clock times (cron is a wall-clock notion): cron expressions
are read by `croniter` in `tz` (default UTC); an interval's occurrences are the
multiples of `every` seconds since the epoch, the same for every process. After
downtime only the latest missed occurrence runs (once); a schedule seen for the
first time starts with the next occurrence. A wall clock stepped back submits
nothing until it passes the last occurrence submitted again; stepped forward,
it submits the latest occurrence passed (see docs/scheduling.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime, timezone, tzinfo

from croniter import croniter

from gq.config import check_duration
from gq.errors import GQError, QueueFull, ValidationError
from gq.submission import check_type, make_spec

log = logging.getLogger("gq.periodic")

SCHEDULER_MAX_SLEEP = 1.0   # wake at least this often: a stepped wall clock is seen soon


class Schedule:
    """One periodic schedule: when (cron or every) and what (type, payload, ...)."""

    def __init__(self, cron: str | None = None, *, every: float | None = None, type: str,
                 payload=None, priority: int = 0, name: str | None = None,
                 tz: tzinfo | None = None, lifetime: float | None = None):
        if (cron is None) == (every is None):
            raise ValidationError("a periodic schedule needs a cron expression or "
                                  "every=<seconds>, not both")
        if cron is not None and (not isinstance(cron, str) or not croniter.is_valid(cron)):
            raise ValidationError(f"{cron!r} is not a valid cron expression "
                                  "(e.g. '*/5 * * * *': minute hour day month weekday)")
        self.cron = cron
        self.every = check_duration("every", every)
        self.type = check_type(type)
        self.tz = tz or timezone.utc
        self.name = name or f"{type}@{cron if cron is not None else f'every {every:g}s'}"
        # validated now, so a bad payload fails at registration, not in the worker
        make_spec(type, payload, priority=priority, lifetime=lifetime,
                  max_payload_bytes=1 << 30)
        self.payload, self.priority, self.lifetime = payload, priority, lifetime

    def latest(self, now: float) -> float:
        """The latest occurrence at or before `now` (epoch seconds)."""
        if self.every is not None:
            return math.floor(now / self.every) * self.every
        start = datetime.fromtimestamp(now, self.tz)
        prev = croniter(self.cron, start).get_prev(float)
        following = croniter(self.cron, datetime.fromtimestamp(prev, self.tz)).get_next(float)
        return following if following <= now else prev

    def following(self, occurrence: float) -> float:
        """The first occurrence after `occurrence`."""
        if self.every is not None:
            return occurrence + self.every
        return croniter(self.cron, datetime.fromtimestamp(occurrence, self.tz)).get_next(float)

    def key(self, occurrence: float) -> str:
        stamp = datetime.fromtimestamp(occurrence, timezone.utc).isoformat()
        return f"periodic:{self.name}:{stamp}"

    def __repr__(self) -> str:
        return f"<gq periodic {self.name!r} -> {self.type!r}>"


def register(queue, cron=None, *, every=None, type: str, payload=None, priority: int = 0,
             name: str | None = None, tz=None, lifetime=None, **handler_options):
    """`Queue.periodic`: add the schedule now; the returned decorator also
    registers the decorated function as the handler of `type`."""
    schedule = Schedule(cron, every=every, type=type, payload=payload, priority=priority,
                        name=name, tz=tz, lifetime=lifetime)
    if any(s.name == schedule.name for s in queue.schedules):
        raise ValidationError(f"a periodic schedule named {schedule.name!r} is already "
                              "registered; pass name= to tell them apart")
    queue.schedules.append(schedule)

    def decorate(fn):
        queue.handler(type, **handler_options)(fn)
        return fn
    return decorate


class PeriodicScheduler:
    """Submits the due occurrences of `queue.schedules` (run by each worker)."""

    def __init__(self, queue):
        self.queue = queue
        self._done: dict[str, float] = {}   # name -> last occurrence known submitted

    def tick(self, now: float | None = None) -> float:
        """Submit every due occurrence not known to be submitted; return the time
        of the next occurrence of any schedule."""
        now = time.time() if now is None else now
        store = self.queue.store
        for schedule in self.queue.schedules:
            occurrence = schedule.latest(now)
            if occurrence <= self._done.get(schedule.name, -math.inf):
                continue
            spec = make_spec(schedule.type, schedule.payload, priority=schedule.priority,
                             key=schedule.key(occurrence), lifetime=schedule.lifetime,
                             max_payload_bytes=self.queue.config.max_payload_bytes, now=now)
            self.queue._apply_lifetime(spec)
            try:
                job_id = store.submit_occurrence(
                    schedule.name, occurrence, [spec], max_depth=self.queue.config.max_depth,
                    now=now, key_window=self.queue.config.idempotency_window)
            except QueueFull as e:
                log.warning("periodic %s: occurrence %s not submitted: %s; trying again",
                            schedule.name, schedule.key(occurrence), e)
                continue
            self._done[schedule.name] = occurrence
            if job_id is not None:
                log.info("periodic %s: submitted job %s for %s", schedule.name, job_id,
                         datetime.fromtimestamp(occurrence, timezone.utc).isoformat(),
                         extra={"job_id": job_id, "schedule": schedule.name})
        return min(s.following(s.latest(now)) for s in self.queue.schedules)

    async def run(self) -> None:
        """Tick until cancelled; the submits run on a thread (they wait on the store)."""
        while True:
            try:
                next_at = await asyncio.to_thread(self.tick)
            except GQError as e:
                log.error("periodic scheduler: %s", e)
                next_at = time.time() + SCHEDULER_MAX_SLEEP
            await asyncio.sleep(min(SCHEDULER_MAX_SLEEP, max(0.005, next_at - time.time())))
