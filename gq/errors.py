"""The GopherQueue error family.

Every error the queue raises derives from `GQError`. Errors that mean "your input
was wrong" also subclass the matching builtin (`ValueError`, `TypeError`,
`KeyError`), so code that already catches those keeps working. Every rejection
happens before anything is persisted, and its message says what to change.
"""

from __future__ import annotations


class GQError(Exception):
    """Base class of every error raised by gq."""


# --- rejected input (nothing was persisted) ---------------------------------


class ValidationError(GQError, ValueError):
    """A job (or a call) was rejected because an argument is invalid."""


class PayloadTooLarge(ValidationError):
    """The encoded payload exceeds the queue's `max_payload_bytes`."""


class CycleError(ValidationError):
    """The dependencies of a submitted batch form a cycle; the batch was refused."""

    def __init__(self, cycle: list[str]):
        self.cycle = list(cycle)
        chain = " -> ".join(repr(c) for c in self.cycle)
        super().__init__(f"dependency cycle: {chain}; the whole batch was refused")


class UnknownDependency(ValidationError):
    """`depends_on` names a job id that is neither stored nor in the same batch."""

    def __init__(self, job_id: str, missing: str):
        self.job_id = job_id
        self.missing = missing
        super().__init__(
            f"job {job_id!r} depends on {missing!r}, which is neither a stored job "
            "nor a job in the same batch"
        )


class DuplicateJobId(ValidationError):
    """A caller-chosen job id is already used by a stored job (or twice in a batch)."""


class QueueFull(GQError):
    """The queue holds `max_depth` unfinished jobs; the submission was refused."""


# --- store problems ----------------------------------------------------------


class PersistenceError(GQError):
    """The store failed to read or write; what was acknowledged before is intact."""


class StorageFull(PersistenceError):
    """The disk or the LMDB map is full; the write was refused, nothing was lost."""


class StoreUnavailable(PersistenceError):
    """The store is failing (circuit open); the call was refused, retry later."""


class DataDirError(GQError, OSError):
    """The data dir cannot be used: not a directory, unwritable, read-only, or
    written by an incompatible format version."""


class RecordCorrupted(GQError):
    """A stored record failed its checksum or could not be decoded."""

    def __init__(self, job_id: str | None, reason: str):
        self.job_id = job_id
        self.reason = reason
        who = f"job {job_id!r}" if job_id is not None else "a job record"
        super().__init__(f"record of {who} is corrupted: {reason}; run `gq check`")


# --- lifecycle ---------------------------------------------------------------


class InvalidTransition(GQError):
    """A state change the lifecycle does not allow (see docs/state_machine.md)."""

    def __init__(self, src: str, dst: str, job_id: str | None = None):
        self.src = src
        self.dst = dst
        self.job_id = job_id
        who = f"job {job_id!r}" if job_id else "a job"
        if src == "submit":
            msg = f"cannot submit {who} directly into state {dst!r}"
        else:
            msg = f"cannot move {who} from {src!r} to {dst!r}"
            if src in ("completed", "failed", "cancelled"):
                msg += f" ({src} is a terminal state)"
        super().__init__(msg)


class LeaseLost(GQError):
    """A worker tried to finish a job it no longer holds (its lease expired, the
    job was cancelled or recovered and re-run): the stale result is refused."""

    def __init__(self, job_id: str, attempt: int, now_state: str, now_attempt: int):
        self.job_id = job_id
        super().__init__(
            f"completion of job {job_id!r} attempt {attempt} refused: the lease is no "
            f"longer held (the job is now {now_state}, attempt {now_attempt})"
        )


class NotRetriable(InvalidTransition):
    """`retry` of a `failed` job: permanent failures are not retried; submit a
    corrected job instead."""

    def __init__(self, job_id: str):
        GQError.__init__(
            self,
            f"job {job_id!r} failed permanently and is not retriable: fix its payload "
            "and submit a new job",
        )
        self.src, self.dst, self.job_id = "failed", "scheduled", job_id


class JobNotFound(GQError, KeyError):
    """No job with that id is stored."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class JobFailed(GQError):
    """`Queue.result`: the job ended without completing (failed, dead_letter or
    cancelled). `.info` is its `JobInfo`: state, error (category, message)."""

    def __init__(self, info):
        self.info = info
        error = info.error
        why = f" ({error.category.value}: {error.message})" if error else ""
        super().__init__(f"job {info.id!r} ended {info.state.value}{why}")


# --- raised by handlers ------------------------------------------------------


class TemporaryError(GQError):
    """Raise from a handler for a transient failure: the job is retried with
    exponential back-off and jitter."""


class PermanentError(GQError):
    """Raise from a handler when retrying cannot help: the job goes to `failed`."""


class Snooze(Exception):
    """Raise from a handler to put the job back: `scheduled` again in `seconds`,
    the attempt not counted against max_attempts (its max_attempts grows by one,
    as River's JobSnooze does), its last error kept. Not a failure: nothing is
    logged as one and no back-off applies."""

    def __init__(self, seconds: float):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not 0 <= seconds < float("inf"):
            raise ValidationError(f"Snooze takes a number of seconds, zero or more, "
                                  f"got {seconds!r}")
        self.seconds = float(seconds)
        super().__init__(f"snoozed for {self.seconds:g}s")
