"""Public views of jobs: `State`, `Category`, `JobInfo`, `JobError`."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

import orjson

from gq._core import states as _states


class State(str, enum.Enum):
    """A job's lifecycle state; values are the lowercase names (docs/state_machine.md)."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def code(self) -> int:
        """The number the compiled core uses for this state."""
        return _STATE_CODES[self]

    @property
    def terminal(self) -> bool:
        return _states.is_terminal(self.code)

    @classmethod
    def parse(cls, value: "State | str") -> "State":
        """`State` from a state or its name; ValidationError names the choices."""
        try:
            return cls(value)
        except ValueError:
            from gq.errors import ValidationError

            choices = ", ".join(s.value for s in cls)
            raise ValidationError(f"unknown state {value!r}; choose one of: {choices}") from None


_STATE_BY_CODE = tuple(State(name) for name in _states.STATE_NAMES)
_STATE_CODES = {state: code for code, state in enumerate(_STATE_BY_CODE)}


def state_from_code(code: int) -> State:
    return _STATE_BY_CODE[code]


class Category(str, enum.Enum):
    """Why an attempt failed."""

    TEMPORARY = "temporary"   # handler raised TemporaryError: retried with back-off
    PERMANENT = "permanent"   # PermanentError or validation: never retried
    SYSTEM = "system"         # any other exception or a crash: retried by default
    TIMEOUT = "timeout"       # execution timeout: handler cancelled, retried

    def __str__(self) -> str:
        return self.value


class JobError:
    """The last failure of a job: category, message and (for `system`) traceback."""

    __slots__ = ("category", "message", "traceback", "attempt")

    def __init__(self, category: Category, message: str, traceback: str | None = None,
                 attempt: int | None = None):
        self.category = Category(category)
        self.message = message
        self.traceback = traceback
        self.attempt = attempt

    def to_json(self) -> bytes:
        return orjson.dumps({"category": self.category.value, "message": self.message,
                             "traceback": self.traceback, "attempt": self.attempt})

    @classmethod
    def from_json(cls, data: bytes) -> "JobError":
        d = orjson.loads(data)
        return cls(d["category"], d["message"], d.get("traceback"), d.get("attempt"))

    def as_dict(self) -> dict:
        return {"category": self.category.value, "message": self.message,
                "traceback": self.traceback, "attempt": self.attempt}

    def __repr__(self) -> str:
        return f"JobError({self.category.value}: {self.message!r})"


def _time_or_none(t: float) -> float | None:
    return t if t > 0 else None


class JobInfo:
    """A snapshot of one stored job, as `Queue.get` and `Queue.list` return it.

    Times are seconds since the epoch (floats), None where not reached yet.
    The payload and result are decoded from JSON on first access.
    """

    __slots__ = ("_rec", "_payload", "_result")

    def __init__(self, record):
        self._rec = record
        self._payload = _UNSET
        self._result = _UNSET

    id = property(lambda self: self._rec.id, doc="The job's id.")
    type = property(lambda self: self._rec.type, doc="The handler type name.")
    state = property(lambda self: _STATE_BY_CODE[self._rec.state], doc="A `gq.State`.")
    priority = property(lambda self: self._rec.priority, doc="Higher runs first.")
    attempts = property(lambda self: self._rec.attempts, doc="Attempts started so far.")
    crashes = property(lambda self: self._rec.crashes,
                       doc="Times a worker process died while running this job.")
    max_attempts = property(lambda self: self._rec.max_attempts)
    seq = property(lambda self: self._rec.seq, doc="Submission order within the store.")
    depends_on = property(lambda self: self._rec.depends_on)
    key = property(lambda self: self._rec.key or None, doc="Idempotency key, if any.")
    created_at = property(lambda self: self._rec.created_at)
    updated_at = property(lambda self: self._rec.updated_at)
    run_at = property(lambda self: _time_or_none(self._rec.run_at))
    started_at = property(lambda self: _time_or_none(self._rec.started_at))
    finished_at = property(lambda self: _time_or_none(self._rec.finished_at))
    timeout = property(lambda self: _time_or_none(self._rec.timeout))
    lifetime = property(lambda self: _time_or_none(self._rec.lifetime))

    @property
    def payload(self):
        if self._payload is _UNSET:
            self._payload = orjson.loads(self._rec.payload)
        return self._payload

    @property
    def result(self):
        """The handler's return value once `completed`, else None."""
        if self._result is _UNSET:
            self._result = orjson.loads(self._rec.result) if self._rec.result else None
        return self._result

    @property
    def error(self) -> JobError | None:
        return JobError.from_json(self._rec.error) if self._rec.error else None

    def as_dict(self) -> dict:
        """A JSON-ready dict (what `gq inspect --json` and the HTTP API print)."""
        def iso(t):
            return datetime.fromtimestamp(t, timezone.utc).isoformat() if t else None

        error = self.error
        return {
            "id": self.id, "type": self.type, "state": self.state.value,
            "priority": self.priority, "payload": self.payload, "result": self.result,
            "error": error.as_dict() if error else None,
            "attempts": self.attempts, "max_attempts": self.max_attempts,
            "crashes": self.crashes,
            "seq": self.seq, "depends_on": list(self.depends_on), "key": self.key,
            "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
            "run_at": iso(self.run_at), "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "timeout": self.timeout, "lifetime": self.lifetime,
        }

    def __repr__(self) -> str:
        return (f"<JobInfo {self.id} type={self.type!r} state={self.state.value} "
                f"priority={self.priority} attempts={self.attempts}>")


_UNSET = object()
