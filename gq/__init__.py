"""GopherQueue: a durable priority job queue embedded in your process.

    q = gq.Queue("./gq-data")
    job_id = q.submit("email.send", {"to": "a@example.com"}, priority=5)
"""

try:
    from gq._core import codec as _codec  # noqa: F401  (fail here, loudly, if unbuilt)
except ImportError as e:  # pragma: no cover - exercised by a broken install only
    raise ImportError(
        "gq's compiled core (gq._core) failed to import: " + str(e) + ". Install gq with "
        "`pip install .` (or build in place: `python setup.py build_ext --inplace`); "
        "there is no pure-Python fallback."
    ) from e

from gq.errors import (CycleError, DataDirError, GQError, InvalidTransition, JobFailed,
                       JobNotFound, NotRetriable, PayloadTooLarge, PermanentError, QueueFull,
                       RecordCorrupted, Snooze, StorageFull, StoreUnavailable,
                       TemporaryError, UnknownDependency, ValidationError)
from gq.jobs import Category, JobError, JobInfo, State
from gq.queue import Queue

__version__ = "0.1.0"

__all__ = [
    "Queue", "Worker", "Job", "JobInfo", "JobError", "State", "Category",
    "GQError", "ValidationError", "PayloadTooLarge", "QueueFull", "CycleError",
    "UnknownDependency", "StorageFull", "StoreUnavailable", "DataDirError",
    "RecordCorrupted", "InvalidTransition", "NotRetriable", "JobNotFound", "JobFailed",
    "TemporaryError", "PermanentError", "Snooze",
]


def __getattr__(name):
    # The worker pulls in asyncio machinery; submit-only processes never pay for it.
    if name in ("Worker", "Job"):
        from gq.runtime import worker
        return getattr(worker, name)
    raise AttributeError(f"module 'gq' has no attribute {name!r}")
