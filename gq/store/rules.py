"""Backend-neutral decisions that every store applies in its own way.

Each store loads the jobs inside its own transaction and asks here what to do:
whether an operator action may go on, what a crashed worker's job becomes, what
an expired job's error says, whether a submission is refused and in what words.
The answer (and its wording) is the same on every backend; applying it stays
the store's (Batch.move on LMDB, set-based SQL on PostgreSQL), and the core's
state gate still checks the move.
"""

from __future__ import annotations

from datetime import datetime, timezone

from gq._core import states as S
from gq.errors import (DuplicateJobId, InvalidTransition, NotRetriable, QueueFull,
                       ValidationError)
from gq.jobs import Category, JobError

# Finished jobs a purge may delete; dead_letter ones are kept for `gq retry`.
PURGEABLE = (S.COMPLETED, S.FAILED, S.CANCELLED)
# Dependency states that can never become `completed`: their dependents are blocked.
UNSATISFIABLE = (S.FAILED, S.DEAD_LETTER, S.CANCELLED)
# Where a job's run ends: a commit moving a job into one wakes its result waiters.
ENDED_STATES = frozenset((S.COMPLETED,) + UNSATISFIABLE)

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


def crash_verdict(crashes: int, attempts: int, crashed: bool,
                  quarantine_after: int) -> tuple[int, bytes | None]:
    """A running job whose worker is gone: (its new crash count, the error of
    its quarantine, or None to put it back to scheduled). A job its worker died
    under `quarantine_after` times goes to dead_letter: it must not take down
    worker after worker. A graceful exit (`crashed` False) counts nothing."""
    crashes += 1 if crashed else 0
    if not (crashed and crashes >= quarantine_after):
        return crashes, None
    return crashes, JobError(Category.SYSTEM,
                             f"quarantined: its worker process died while running it "
                             f"{crashes} times (it keeps killing its worker); fix the "
                             "handler or the payload, then `gq retry` it",
                             None, attempts).to_json()


def lifetime_error(lifetime: float, state: int, created_at: float, attempts: int,
                   now: float) -> bytes:
    """The error of a job dead-lettered because its lifetime passed."""
    message = (f"lifetime of {lifetime:g}s passed while it was {S.STATE_NAMES[state]} "
               f"(submitted {now - created_at:.1f}s ago)")
    return JobError(Category.TIMEOUT, message, None, attempts).to_json()


def check_depth(depth: int, adding: int, max_depth: int | None) -> None:
    """QueueFull if `adding` new jobs would take the waiting jobs (pending +
    scheduled, retries not counted: accepted work never holds back new
    submissions) past `max_depth`."""
    if max_depth is not None and adding and depth + adding > max_depth:
        raise QueueFull(
            f"the queue holds {depth:,} jobs waiting to run (pending + scheduled, "
            f"retries not counted) and max_depth is {max_depth:,}; {adding} more would "
            "pass it. Retry later or add workers")


def id_taken(job_id: str) -> DuplicateJobId:
    return DuplicateJobId(f"job id {job_id!r} is already used by a stored job")


def folded_dependency(dep: str) -> ValidationError:
    """A job of a batch depends on a spec that its idempotency key folded into an
    existing job: there is no new job to depend on."""
    return ValidationError(
        f"a job depends on {dep!r}, which the batch did not create because its "
        "idempotency key matched an existing job; depend on that job instead")

