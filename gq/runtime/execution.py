"""Running one job: its handler under the execution timeout, stopped from
outside when asked (cancel, lost lease, shutdown), its result encoded to plain
JSON, and a failure turned into the retry/backoff decision.

A `Runner` knows nothing of claims or commits: it turns a claimed record into
an `Outcome`, or None when the attempt was stopped and nothing is to be recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import Callable, NamedTuple

import orjson

from gq import observe, plain_json
from gq._core import states as S
from gq.errors import PermanentError, Snooze, TemporaryError, ValidationError
from gq.jobs import Category, JobError
from gq.retry import backoff_delay, should_retry

log = logging.getLogger("gq.worker")


class Outcome(NamedTuple):
    """What an attempt ended in, as the store records it."""

    state: int          # S.COMPLETED, S.SCHEDULED (a retry, a snooze), S.FAILED, S.DEAD_LETTER
    result: bytes       # the encoded result (completed), else b""
    error: bytes        # the encoded JobError (a failure; a snooze keeps the last), else b""
    run_at: float       # a retry's or a snooze's wall-clock start, else 0.0
    max_attempts: int = 0   # a snooze: the job's max_attempts, one more; else 0 (unchanged)


class Job:
    """What a handler receives: the job's id, type, payload and attempt number."""

    __slots__ = ("id", "type", "payload", "attempt", "max_attempts", "priority",
                 "created_at", "key")

    def __init__(self, record, max_attempts: int):
        self.id = record.id
        self.type = record.type
        self.payload = orjson.loads(record.payload)
        self.attempt = record.attempts
        self.max_attempts = max_attempts
        self.priority = record.priority
        self.created_at = record.created_at
        self.key = record.key or None

    def __repr__(self) -> str:
        return f"<gq.Job {self.id} type={self.type!r} attempt={self.attempt}>"


class Running:
    """Book-keeping of one job a worker holds."""

    __slots__ = ("record", "task", "handler_task", "stop_reason", "finishing", "deadline")

    def __init__(self, record):
        self.record = record
        self.task: asyncio.Task | None = None          # the job's own task
        self.handler_task: asyncio.Future | None = None  # a sync handler's thread
        self.stop_reason: str | None = None   # "timeout", "cancelled", "lease lost", "shutdown"
        self.finishing = False                # the handler returned: too late to stop it
        self.deadline = float("inf")          # monotonic time its execution timeout passes

    def stop(self, reason: str) -> None:
        """Stop the handler from outside, unless it already ended or was stopped."""
        if self.stop_reason is not None or self.finishing:
            return
        self.stop_reason = reason
        # a sync handler: cancel the await of its thread; async: the job's task
        target = self.handler_task if self.handler_task is not None else self.task
        target.cancel()


class Runner:
    """Runs handlers of `queue`. `pool` runs sync handlers on daemon threads;
    `on_unstoppable` is called when a sync handler's timeout passed and its
    thread cannot be stopped (a supervised worker then has itself replaced)."""

    def __init__(self, queue, *, recorder, pool, rng=None,
                 on_unstoppable: Callable[[], None] = lambda: None):
        self.queue = queue
        self._recorder = recorder
        self._pool = pool
        self._rng = rng
        self._on_unstoppable = on_unstoppable

    def settings(self, record) -> tuple:
        """(handler spec, timeout, max_attempts) of one attempt of `record`: a
        plain tuple, as this runs once per job on the hot path."""
        spec = self.queue.handlers[record.type]
        config = self.queue.config
        timeout = record.timeout if record.timeout > 0 else (spec.timeout or config.timeout)
        max_attempts = record.max_attempts or spec.max_attempts or config.max_attempts
        return spec, timeout, max_attempts

    async def run(self, running: Running) -> Outcome | None:
        """One attempt of `running.record`: its outcome, or None when stopped."""
        record = running.record
        spec, timeout, max_attempts = self.settings(record)
        try:
            job = Job(record, max_attempts)
        except Exception as e:    # a payload that does not decode cannot run
            problem = f"{type(e).__name__}: {e}"
        else:
            problem = spec.validation_problem(job.payload)
        if problem is not None:
            return self.failure(record, spec, max_attempts, Category.PERMANENT,
                                f"validation failed: {problem}", None)
        began = time.monotonic()
        outcome = await self._call_handler(running, spec, job, timeout, max_attempts)
        if outcome is not None:
            self._recorder.ran(record.type, time.monotonic() - began)
        return outcome

    async def _call_handler(self, running, spec, job, timeout, max_attempts):
        """Run the handler under its execution timeout; return the outcome, or None
        when the attempt was stopped from outside (cancel, lost lease, shutdown).

        An async handler runs inside this job's own task (no extra task per job):
        a timer cancels that task when the timeout passes, and the reason set by
        whoever cancelled tells a timeout from a cancel. A sync handler runs on a
        daemon thread; on timeout its thread is abandoned, its slot freed."""
        record = running.record
        loop = asyncio.get_running_loop()
        running.deadline = time.monotonic() + timeout
        timer = loop.call_later(timeout, running.stop, "timeout")
        try:
            if spec.is_async:
                value = await spec.fn(job)
            else:
                running.handler_task = self._pool.submit(loop, spec.fn, job)
                value = await running.handler_task
        except asyncio.CancelledError:
            reason = running.stop_reason
            if reason is None:
                raise          # the worker itself is being torn down
            _uncancel()
            if reason == "timeout" and not spec.is_async:
                self._on_unstoppable()
            if reason == "timeout":
                return self.failure(record, spec, max_attempts, Category.TIMEOUT,
                                    f"execution timeout after {timeout:g}s; handler "
                                    "cancelled", None)
            log.info("job %s (%s) attempt %d stopped: %s", record.id, record.type,
                     record.attempts, reason,
                     extra={"job_id": record.id, "job_type": record.type,
                            "attempt": record.attempts, "reason": reason})
            return None
        except Snooze as snooze:
            return self.snoozed(record, max_attempts, snooze.seconds)
        except TemporaryError as exc:
            return self.failure(record, spec, max_attempts, Category.TEMPORARY,
                                f"{type(exc).__name__}: {exc}", None)
        except PermanentError as exc:
            return self.failure(record, spec, max_attempts, Category.PERMANENT,
                                f"{type(exc).__name__}: {exc}", None)
        except Exception as exc:   # anything else is a bug or a crash: `system`
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return self.failure(record, spec, max_attempts, Category.SYSTEM,
                                f"{type(exc).__name__}: {exc}", tb)
        finally:
            timer.cancel()
        try:
            return Outcome(S.COMPLETED, plain_json.encode(value, "result"), b"", 0.0)
        except ValidationError as e:   # stored changed is worse than not stored
            return self.failure(record, spec, max_attempts, Category.PERMANENT,
                                f"the handler's result is not plain JSON: {e}", None)

    def snoozed(self, record, max_attempts: int, seconds: float) -> Outcome:
        """The handler raised Snooze: back to scheduled in `seconds`, with one more
        attempt allowed, so the snooze does not use one up."""
        log.info("job %s (%s) attempt %d snoozed for %gs", record.id, record.type,
                 record.attempts, seconds,
                 extra={"job_id": record.id, "job_type": record.type,
                        "attempt": record.attempts, "snooze": seconds})
        observe.snoozed(record.type)
        return Outcome(S.SCHEDULED, b"", record.error, time.time() + seconds,
                       max_attempts + 1)

    def failure(self, record, spec, max_attempts, category, message, tb) -> Outcome:
        """The outcome of a failed attempt: retry later, failed, or dead_letter."""
        attempt = record.attempts
        error = JobError(category, message, tb, attempt).to_json()
        if should_retry(category, attempt, max_attempts, spec.retry_system_errors):
            config = self.queue.config
            delay = backoff_delay(attempt, spec.backoff_base or config.backoff_base,
                                  spec.backoff_cap or config.backoff_cap, self._rng)
            state, verdict = S.SCHEDULED, f"retry in {delay:.2f}s"
            run_at = time.time() + delay
        else:
            run_at = 0.0
            if category is Category.PERMANENT:
                state, verdict = S.FAILED, "failed permanently"
            else:
                state, verdict = S.DEAD_LETTER, f"dead-lettered after {attempt} attempts"
        log.log(logging.ERROR if category is Category.SYSTEM else logging.WARNING,
                "job %s (%s) attempt %d/%d failed [%s]: %s; %s%s", record.id, record.type,
                attempt, max_attempts, category.value, message, verdict,
                f"\n{tb}" if tb else "",
                extra={"job_id": record.id, "job_type": record.type, "attempt": attempt,
                       "max_attempts": max_attempts, "category": category.value,
                       "outcome": S.STATE_NAMES[state]})
        observe.attempt_failed(record.type, category.value, retried=state == S.SCHEDULED,
                               dead_lettered=state == S.DEAD_LETTER)
        return Outcome(state, b"", error, run_at)


def _uncancel() -> None:
    """Python 3.11+ counts cancel requests; having handled one, reset the count so
    later awaits in this task behave normally."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()
