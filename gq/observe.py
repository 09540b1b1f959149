"""Recording what the queue and the worker do into the metrics of gq.metrics.

The worker's hot path must not pay a prometheus-client call (a lock, checks,
a few microseconds; more on a busy machine) per job, nor per committed batch
(a busy worker commits small batches often). So a worker records into a
`WorkerRecorder` of its own — list appends and a dict update — and a timer
applies what piled up every APPLY_INTERVAL while there is something to apply:
each histogram gets one increment per bucket hit and one for its sum,
completions one increment per type, the busy-slot gauges one set.

Labelled children are looked up once per label set and cached (`labels()`
hashes and locks on every call). `forget_children()` drops the cache;
gq.http.metrics_export calls it whenever the metric values move to new storage
(multi-process mode, after a fork).
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left

from gq import metrics as M
from gq._core.plan import count_types

APPLY_INTERVAL = 0.05      # seconds a worker's metrics may lag behind its work

_children: dict = {}       # (metric, label values) -> its child


def _child(metric, *labels):
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def forget_children() -> None:
    _children.clear()


def jobs_submitted(job_type: str, n: int = 1) -> None:
    _child(M.JOBS_SUBMITTED, job_type).inc(n)


def batch_submitted(specs) -> None:
    """Count a stored batch (one increment per type)."""
    for job_type, n in count_types(specs).items():
        _child(M.JOBS_SUBMITTED, job_type).inc(n)


def attempt_failed(job_type: str, category: str, retried: bool, dead_lettered: bool) -> None:
    """A failed attempt (rare next to completions: counted at once)."""
    _child(M.JOBS_FAILED, job_type, category).inc()
    if retried:
        _child(M.JOBS_RETRIED, job_type).inc()
    elif dead_lettered:
        _child(M.JOBS_DEAD_LETTERED, job_type).inc()


def snoozed(job_type: str) -> None:
    """An attempt that raised gq.Snooze."""
    _child(M.JOBS_SNOOZED, job_type).inc()


def observe_many(histogram_child, values) -> None:
    """Histogram.observe for each value, with one increment per bucket hit."""
    try:
        bounds = histogram_child._upper_bounds
        buckets = histogram_child._buckets
        total = histogram_child._sum
    except AttributeError:   # a prometheus-client with other internals: the slow way
        for value in values:
            histogram_child.observe(value)
        return
    hits: dict[int, int] = {}
    for value in values:
        i = bisect_left(bounds, value)     # the first bound >= value, as observe() picks
        hits[i] = hits.get(i, 0) + 1
    for i, n in hits.items():
        buckets[i].inc(n)
    total.inc(sum(values))


class WorkerRecorder:
    """One worker's metrics, gathered on its event loop and applied in batches."""

    __slots__ = ("slots", "_waits", "_runs", "_completed", "_busy", "_latest", "_timer")

    def __init__(self, slots: int):
        self.slots = slots
        self._waits: list[float] = []
        self._runs: list[tuple[str, float]] = []
        self._completed: dict[str, int] = {}
        self._busy = -1           # what the gauges show
        self._latest = 0          # the busy count last handed to flush()
        self._timer = None        # the pending apply, if one is scheduled

    def started(self, record) -> None:
        """A job just claimed: its queue wait, from when it could run (submit or
        run_at, the later) to the claim. Wall clock: the two ends may lie in
        different processes."""
        since = record.run_at if record.run_at > record.created_at else record.created_at
        wait = record.started_at - since
        self._waits.append(wait if wait > 0 else 0.0)

    def ran(self, job_type: str, seconds: float) -> None:
        self._runs.append((job_type, seconds))

    def completed(self, per_type: dict[str, int]) -> None:
        done = self._completed
        for job_type, n in per_type.items():
            done[job_type] = done.get(job_type, 0) + n

    def flush(self, busy: int, force: bool = False) -> None:
        """Called every dispatch turn with the busy-slot count: what was recorded
        reaches the metrics within APPLY_INTERVAL (at once with `force`)."""
        self._latest = busy
        if force:
            self._apply()
        elif self._timer is None and (self._waits or self._runs or self._completed
                                      or busy != self._busy):
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(APPLY_INTERVAL, self._apply)

    def _apply(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waits:
            waits, self._waits = self._waits, []
            observe_many(M.QUEUE_WAIT, waits)
        if self._runs:
            runs, self._runs = self._runs, []
            by_type: dict[str, list[float]] = {}
            for job_type, seconds in runs:
                by_type.setdefault(job_type, []).append(seconds)
            for job_type, values in by_type.items():
                observe_many(_child(M.EXECUTION, job_type), values)
        if self._completed:
            done, self._completed = self._completed, {}
            for job_type, n in done.items():
                _child(M.JOBS_COMPLETED, job_type).inc(n)
        if self._latest != self._busy:
            self._busy = self._latest
            M.WORKERS_ACTIVE.set(self._busy)
            M.WORKER_UTILIZATION.set(self._busy / self.slots)
