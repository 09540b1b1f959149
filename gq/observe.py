"""Recording what the queue and the worker do into the metrics of gq.metrics.

The worker calls these on its hot path, so each costs one or two value updates:
labelled children are looked up once per label set and cached (`labels()` hashes
and locks on every call), completions are counted once per type per committed
batch, and the busy-slot gauges are set once per dispatch turn, not per job.

`forget_children()` drops the cache; gq.metrics_export calls it whenever the
metric values move to new storage (multi-process mode, after a fork).
"""

from __future__ import annotations

from gq import metrics as M

_children: dict = {}     # (metric, label values) -> its child


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
    per_type: dict[str, int] = {}
    for spec in specs:
        per_type[spec.type] = per_type.get(spec.type, 0) + 1
    for job_type, n in per_type.items():
        _child(M.JOBS_SUBMITTED, job_type).inc(n)


def jobs_completed(per_type: dict[str, int]) -> None:
    for job_type, n in per_type.items():
        _child(M.JOBS_COMPLETED, job_type).inc(n)


def attempt_failed(job_type: str, category: str, retried: bool, dead_lettered: bool) -> None:
    _child(M.JOBS_FAILED, job_type, category).inc()
    if retried:
        _child(M.JOBS_RETRIED, job_type).inc()
    elif dead_lettered:
        _child(M.JOBS_DEAD_LETTERED, job_type).inc()


def job_started(record) -> None:
    """Queue wait of a job just claimed: from when it could run (submit or its
    run_at, the later) to its claim. Wall clock: the two ends may lie in
    different processes."""
    since = record.run_at if record.run_at > record.created_at else record.created_at
    wait = record.started_at - since
    M.QUEUE_WAIT.observe(wait if wait > 0 else 0.0)


def attempt_ran(job_type: str, seconds: float) -> None:
    _child(M.EXECUTION, job_type).observe(seconds)


def slots_busy(busy: int, slots: int) -> None:
    M.WORKERS_ACTIVE.set(busy)
    M.WORKER_UTILIZATION.set(busy / slots)
