"""Backend-neutral decisions that every store applies in its own way.

Each store loads the job inside its own transaction and asks here whether an
operator action may go on; the refusal (and its wording) is the same on every
backend. The move itself stays the store's (Batch.move on LMDB, SQL on PostgreSQL),
and the core's state gate still checks it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from gq._core import states as S
from gq.errors import InvalidTransition, NotRetriable

# Why a job in this state cannot be retried, and what a user can do instead.
_NOT_RETRIABLE_BECAUSE = {
    S.PENDING: "it is pending: it runs once its dependencies complete "
               "(`gq inspect {id}` lists what it waits on)",
    S.RUNNING: "it is running now (attempt {attempts}); if its worker dies it is "
               "rescheduled on its own",
    S.COMPLETED: "it completed; to run it again, submit a new job",
    S.CANCELLED: "it was cancelled; to run it, submit a new job",
}

# How a job that cannot be cancelled ended.
_ENDED = {
    S.COMPLETED: "it already completed",
    S.FAILED: "it already failed",
    S.CANCELLED: "it is already cancelled",
    S.DEAD_LETTER: "it is dead-lettered (`gq retry {id}` sends it back to scheduled)",
}


def check_retry(rec, now: float) -> None:
    """Refuse a retry of `rec` unless it is dead-lettered, saying what the job is
    doing and what to do instead. A `failed` job raises NotRetriable."""
    if rec.state == S.DEAD_LETTER:
        return
    if rec.state == S.FAILED:
        raise NotRetriable(rec.id)
    if rec.state == S.SCHEDULED:
        because = ("it is scheduled and waits for a free worker" if rec.run_at <= now
                   else f"it is scheduled to run at {_utc(rec.run_at)}") + \
            "; nothing to do (`gq cancel` stops it)"
    else:
        because = _NOT_RETRIABLE_BECAUSE[rec.state].format(id=rec.id, attempts=rec.attempts)
    _refuse(rec, "scheduled", f"cannot be retried: only dead_letter jobs can be, and {because}")


def check_cancel(rec) -> None:
    """Refuse to cancel a job that already ended, saying how it ended."""
    ended = _ENDED.get(rec.state)
    if ended is not None:
        _refuse(rec, "cancelled", f"cannot be cancelled: {ended.format(id=rec.id)}")


def _refuse(rec, dst: str, why: str):
    """InvalidTransition (what callers catch, HTTP 409) with a message that says why."""
    error = InvalidTransition(S.STATE_NAMES[rec.state], dst, rec.id)
    error.args = (f"job {rec.id!r} {why}",)
    raise error


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")
