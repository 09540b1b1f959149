"""Turning a caller's submit arguments into validated `JobSpec`s.

Everything that can be checked without the store is checked here, before any
transaction starts: types, sizes, ranges, and dependency cycles inside a batch
(a cycle can only be formed inside one batch: a stored job's dependencies are
fixed and all named jobs that already existed).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

from gq import plain_json
from gq.config import (MAX_ATTEMPTS_LIMIT, MAX_ID_LENGTH, MAX_KEY_LENGTH, MAX_TYPE_LENGTH,
                       PRIORITY_MAX, PRIORITY_MIN, check_duration, check_positive_int)
from gq._core.plan import JobSpec
from gq.errors import CycleError, DuplicateJobId, PayloadTooLarge, ValidationError

# Generated ids are "<store tag>-<seq>" in hex; callers may not choose ids of that
# shape, so a generated id can never collide with a caller-chosen one.
GENERATED_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{12}")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f]")

# The keyword arguments of one submit (Queue.submit, a job of Queue.submit_many, the
# body of POST /v1/jobs): every name make_spec takes from a caller.
SUBMIT_FIELDS = frozenset({"type", "payload", "priority", "delay", "run_at", "depends_on",
                           "key", "id", "max_attempts", "timeout", "lifetime"})


def _check_text(what: str, value, max_length: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise ValidationError(f"{what} must not be empty")
    if len(value) > max_length:
        raise ValidationError(f"{what} is {len(value)} characters; the limit is {max_length}")
    if _FORBIDDEN_CHARS.search(value):
        raise ValidationError(f"{what} {value!r} contains a control character")
    return value


_valid_types: dict[str, str] = {}   # job types already checked (there are few)


def check_type(job_type) -> str:
    if job_type.__class__ is str and job_type in _valid_types:
        return job_type
    _check_text("job type", job_type, MAX_TYPE_LENGTH)
    if len(_valid_types) < 10_000:
        _valid_types[job_type] = job_type
    return job_type


def known_types() -> dict[str, str]:
    """Job types already validated (for the compiled fast path of submit_many)."""
    return _valid_types


def check_job_id(job_id) -> str:
    _check_text("job id", job_id, MAX_ID_LENGTH)
    if GENERATED_ID.fullmatch(job_id):
        raise ValidationError(
            f"job id {job_id!r} has the shape of a generated id (8 hex - 12 hex), "
            "which is reserved; choose another id"
        )
    return job_id


def encode_payload(job_type: str, payload, max_bytes: int) -> bytes:
    """The payload as JSON, refused unless it is plain JSON (gq.plain_json) and
    within `max_bytes`."""
    try:
        data = plain_json.encode(payload)
    except ValidationError as e:
        raise ValidationError(f"the payload of a {job_type!r} job is not plain JSON: "
                              f"{e}") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"payload of a {job_type!r} job is {len(data):,} bytes of JSON; the limit is "
            f"{max_bytes:,} (Queue(max_payload_bytes=...)); store large data elsewhere "
            "and pass a reference"
        )
    return data


def _check_run_at(delay, run_at, now: float) -> float:
    if delay is not None and run_at is not None:
        raise ValidationError("give either delay= or run_at=, not both")
    if delay is not None:
        return now + check_duration("delay", delay, allow_zero=True) if delay else 0.0
    if run_at is None:
        return 0.0
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise ValidationError(
                "run_at must be a timezone-aware datetime (e.g. datetime.now(timezone.utc)); "
                "a naive datetime is ambiguous"
            )
        return run_at.timestamp()
    if isinstance(run_at, (int, float)) and not isinstance(run_at, bool) and math.isfinite(run_at):
        return float(run_at)
    raise ValidationError(f"run_at must be an aware datetime or epoch seconds, got {run_at!r}")


def parse_time(text: str, name: str = "run_at") -> float:
    """A time given as text (a command-line flag, a JSON string) -> epoch seconds.

    Accepted: epoch seconds ("1767258000", "1767258000.5") or ISO 8601 with a
    timezone ("2026-05-01T09:00:00Z", "...z", "...+02:00"). `name` is what the
    caller calls the value (--run-at, run_at), for the error message.
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{name} {text!r} is not an ISO 8601 time (e.g. "
                              "2026-05-01T09:00:00Z) or epoch seconds") from None
    if when.tzinfo is None:
        raise ValidationError(f"{name} {text!r} has no timezone; add Z or +HH:MM")
    return when.timestamp()


def make_spec(type, payload=None, *, priority=0, delay=None, run_at=None, depends_on=None,
              key=None, id=None, max_attempts=None, timeout=None, lifetime=None,
              max_payload_bytes: int, now: float | None = None) -> JobSpec:
    """Validate one job's arguments; raise a ValidationError that names the problem."""
    job_type = check_type(type)
    if id is not None:
        id = check_job_id(id)
    if priority.__class__ is not int:
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ValidationError(f"priority must be an integer, got {priority!r}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValidationError(
            f"priority {priority} is out of range; use {PRIORITY_MIN}..{PRIORITY_MAX} "
            "(higher runs first)"
        )
    if delay is None and run_at is None:
        run_at = 0.0
    else:
        run_at = _check_run_at(delay, run_at, time.time() if now is None else now)
    if depends_on is None:
        deps = ()
    else:
        if isinstance(depends_on, (str, bytes)) or not hasattr(depends_on, "__iter__"):
            raise ValidationError("depends_on must be a list of job ids")
        deps = tuple(dict.fromkeys(_check_text("dependency id", d, MAX_ID_LENGTH)
                                   for d in depends_on))
        if id is not None and id in deps:
            raise CycleError([id, id])
    if key is not None:
        key = _check_text("key", key, MAX_KEY_LENGTH)
    if max_attempts is not None:
        max_attempts = check_positive_int("max_attempts", max_attempts)
        if max_attempts > MAX_ATTEMPTS_LIMIT:
            raise ValidationError(
                f"max_attempts {max_attempts:,} is too large; the limit is {MAX_ATTEMPTS_LIMIT:,}")
    if timeout is not None:
        timeout = check_duration("timeout", timeout)
    if lifetime is not None:
        lifetime = check_duration("lifetime", lifetime)
    return JobSpec(
        id, job_type, encode_payload(job_type, payload, max_payload_bytes), priority, run_at,
        deps, key or "", max_attempts or 0,
        -1.0 if timeout is None else timeout, -1.0 if lifetime is None else lifetime,
    )


def check_batch(specs: list[JobSpec]) -> None:
    """Refuse duplicate ids and dependency cycles inside one batch."""
    named = {}
    for spec in specs:
        if spec.id is not None:
            if spec.id in named:
                raise DuplicateJobId(f"job id {spec.id!r} appears twice in the batch")
            named[spec.id] = spec
    if not any(spec.depends_on for spec in named.values()):
        return
    # Iterative DFS over edges between batch jobs only (stored jobs cannot point
    # back into the batch). Colours: absent = unvisited, 1 = on stack, 2 = done.
    colour: dict[str, int] = {}
    for root in named:
        if root in colour:
            continue
        stack = [(root, iter(named[root].depends_on))]
        path = [root]
        colour[root] = 1
        while stack:
            node, edges = stack[-1]
            for dep in edges:
                if dep not in named:
                    continue
                state = colour.get(dep)
                if state == 1:
                    raise CycleError(path[path.index(dep):] + [dep])
                if state is None:
                    colour[dep] = 1
                    path.append(dep)
                    stack.append((dep, iter(named[dep].depends_on)))
                    break
            else:
                colour[node] = 2
                path.pop()
                stack.pop()
