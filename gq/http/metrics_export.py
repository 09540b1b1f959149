"""Serving gq's metrics: one process, or the sum over `processes=N`.

One worker process: its own registry (`gq.metrics.REGISTRY`) is the answer.

`processes=N`: each child counts in its own process, and the supervisor (which
serves HTTP) must answer for all of them. We use prometheus-client's
multi-process mode: every process writes its values to memory-mapped files of
its own (`<kind>_<pid>.db`) in one directory per supervisor run,
`<data dir>/metrics/<supervisor pid>/` (a PostgreSQL queue: under the temp dir),
and a scrape sums the files (counters
and histograms add up; gauges follow each metric's `multiprocess_mode`). A write
is a store into a mapped page: nothing is lost when a child is killed, and no
child does anything at scrape time.

prometheus-client picks the storage of a metric's value when the value object
is made, and gq's metrics are made at import, long before a supervisor starts.
`enable_multiprocess` therefore switches the value class and re-makes the value
of every gq metric in place (the objects other modules imported stay valid).
A forked child calls `reset_after_fork`, which does the same with a fresh value
class: its values then go to files of its own pid, and no lock a parent thread
held at fork time (the mmap writer's lock is global) can block it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest,
                               values)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from gq import metrics as M
from gq import observe
from gq.jobs import state_from_code
from gq.store.locations import is_postgres

RUNS_DIR = "metrics"          # under the data dir
_run_dir: str | None = None   # set while this process is in multi-process mode


def _gq_metrics() -> list[MetricWrapperBase]:
    return [m for m in vars(M).values() if isinstance(m, MetricWrapperBase)]


def _remake_values(value_class) -> None:
    values.ValueClass = value_class
    for metric in _gq_metrics():
        if metric._labelnames:
            with warnings.catch_warnings():   # "clear() does not clear the files": right,
                warnings.simplefilter("ignore")   # the files are not ours to clear
                metric.clear()      # children are re-made, with the new class, on use
        else:
            metric._metric_init()   # the one value of an unlabelled metric
    observe.forget_children()


def runs_base(location: str) -> str:
    """Where run directories go: under the data dir, or (a PostgreSQL queue,
    which has none) under the system's temp dir."""
    if is_postgres(location):
        return os.path.join(tempfile.gettempdir(), f"gq-{RUNS_DIR}-{os.getuid()}")
    return os.path.join(location, RUNS_DIR)


def enable_multiprocess(location: str) -> str:
    """Supervisor, before forking: a fresh run directory, every gq metric's
    values in files there. Returns the directory."""
    global _run_dir
    base = runs_base(location)
    os.makedirs(base, exist_ok=True)
    _remove_dead_runs(base)
    run_dir = os.path.join(base, str(os.getpid()))
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = run_dir
    _run_dir = run_dir
    _remake_values(values.MultiProcessValue())
    # The supervisor runs no jobs: its busy-slot gauges must not count as a worker's.
    _unlink_gauges(os.getpid(), modes=("livesum", "liveall"))
    return run_dir


def reset_after_fork() -> None:
    """A forked child of the supervisor: its own files, a fresh lock."""
    if _run_dir is not None:
        _remake_values(values.MultiProcessValue())


def child_exited(pid: int) -> None:
    """Supervisor, after reaping a child: its gauges stop counting (a dead
    process has no slots busy and no circuit open); its counters and histograms
    stay, so totals never go down."""
    if _run_dir is not None:
        _unlink_gauges(pid)


def _unlink_gauges(pid: int, modes=None) -> None:
    for name in os.listdir(_run_dir):
        if not (name.startswith("gauge_") and name.endswith(f"_{pid}.db")):
            continue
        if modes is None or name[len("gauge_"):-len(f"_{pid}.db")] in modes:
            try:
                os.unlink(os.path.join(_run_dir, name))
            except FileNotFoundError:
                pass


def disable_multiprocess() -> None:
    """Supervisor, after its children are gone: back to in-process values; the
    run directory is removed."""
    global _run_dir
    if _run_dir is None:
        return
    run_dir, _run_dir = _run_dir, None
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    _remake_values(values.MutexValue)
    shutil.rmtree(run_dir, ignore_errors=True)


def _remove_dead_runs(base: str) -> None:
    """Run directories of supervisors that are gone (killed, say) are stale."""
    for name in os.listdir(base):
        if not name.isdigit():
            continue
        pid = int(name)
        alive = pid != os.getpid()
        if alive:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                pass
        if not alive:
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def refresh_queue_gauges(store) -> None:
    """The gauges read from the store at scrape time: gq_queue_pending by state
    (the store's counts) and gq_jobs_blocked."""
    by_state = {name: 0 for name in ("pending", "scheduled", "running", "completed",
                                     "failed", "dead_letter", "cancelled")}
    for (code, _type), n in store.counts().items():
        by_state[state_from_code(code).value] += n
    for state, n in by_state.items():
        M.QUEUE_PENDING.labels(state).set(n)
    M.JOBS_BLOCKED.set(store.blocked_count())


def exposition(store=None) -> tuple[bytes, str]:
    """The Prometheus text for this process, or for all processes of this
    supervisor run; with `store`, the gauges read from it are refreshed first."""
    if store is not None:
        refresh_queue_gauges(store)
    if _run_dir is None:
        return generate_latest(M.REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_run_dir)
    return generate_latest(registry), CONTENT_TYPE_LATEST
