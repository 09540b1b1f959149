"""Helpers for testing code that uses gq, on a real (temporary) store.

What River's `rivertest` and Oban's testing modes give their users:

    from gq.testing import temporary_queue, drain, inline, assert_submitted

    def test_signup_sends_a_welcome_email():
        with temporary_queue(handlers_from=myapp.queue) as q:
            myapp.signup(q, "a@example.com")             # your code submits jobs
            assert_submitted(q, "email.send", payload={"to": "a@example.com"})
            result = drain(q)                            # run them, here and now
            assert result.completed == 1

- `temporary_queue()` opens a real `gq.Queue` on a fresh temporary data dir
  (removed afterwards), optionally with the handlers of your application's queue.
- `drain(q)` runs the registered handlers with a real `gq.Worker` until no
  runnable job is left (dependencies respected, retries and timeouts as in
  production); `include_delayed=True` also runs delayed jobs and retry back-offs
  at once. `adrain(q)` is the same for async tests.
- `inline(q)`: while active, every submit runs the job (and whatever it makes
  runnable) before returning.
- `assert_submitted`, `refute_submitted`, `jobs_of_type`, `last_error`: look at
  what your code submitted and how it ended.

The pytest plugin `gq.pytest_plugin` (installed with gq) offers the same as a
`gq_queue` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Iterator

import gq
from gq.jobs import JobError, JobInfo, State

DRAIN_TIMEOUT_DEFAULT = 60.0   # seconds a drain may take before it is reported stuck
_ALL = 1 << 62                 # "no limit" for store listings


@contextlib.contextmanager
def temporary_queue(handlers_from: "gq.Queue | None" = None, **options: Any) -> Iterator[gq.Queue]:
    """A real `gq.Queue` on a fresh temporary data dir, closed and removed on exit.

    `handlers_from`: a queue whose registered handlers (your application's) this
    one runs too. `options`: `gq.Queue` keyword arguments (e.g. `backoff_base`)."""
    path = tempfile.mkdtemp(prefix="gq-test-")
    try:
        q = gq.Queue(path, **options)
        if handlers_from is not None:
            q.handlers.update(handlers_from.handlers)
        try:
            yield q
        finally:
            _stop_inline(q)
            q.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- draining -------------------------------------------------------------------

@dataclass(frozen=True)
class DrainResult:
    """How the jobs a drain ran ended (counts of jobs that reached each state
    during the drain), and how many attempts it made in all."""

    completed: int = 0
    failed: int = 0
    dead_letter: int = 0
    cancelled: int = 0
    attempts: int = 0

    @property
    def succeeded(self) -> bool:
        """True if no job ended failed or dead-lettered during the drain."""
        return self.failed == 0 and self.dead_letter == 0


class DrainTimeout(AssertionError):
    """A drain did not finish in time: a handler hangs, or jobs keep making work."""


def drain(q: gq.Queue, *, include_delayed: bool = False,
          timeout: float = DRAIN_TIMEOUT_DEFAULT) -> DrainResult:
    """Run the handlers registered on `q` until no runnable job is left; return
    how the jobs ended.

    Runnable: scheduled and due, of a type with a handler, not paused. A job
    whose dependencies complete during the drain runs in it; a temporary
    failure's retry waits out its back-off unless `include_delayed=True`, which
    also runs jobs delayed into the future at once. Raises `DrainTimeout` if work
    is still going after `timeout` seconds. Callable from sync tests and from
    inside a running event loop (then it runs on a helper thread; prefer
    `await adrain(q)` there)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_loop(adrain(q, include_delayed=include_delayed, timeout=timeout))
    box: dict = {}

    def run():
        try:
            box["result"] = _run_loop(adrain(q, include_delayed=include_delayed,
                                             timeout=timeout))
        except BaseException as e:   # handed to the caller below
            box["error"] = e
    thread = threading.Thread(target=run, name="gq-testing-drain")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _run_loop(coro):
    try:
        import uvloop
        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coro)


async def adrain(q: gq.Queue, *, include_delayed: bool = False,
                 timeout: float = DRAIN_TIMEOUT_DEFAULT) -> DrainResult:
    """`drain` for async tests: serves on the running event loop."""
    if not q.handlers:
        raise gq.ValidationError("the queue has no handlers to drain with: register some "
                                 "with @q.handler(type), or temporary_queue(handlers_from=...)")
    state = _drain_state(q)
    if state.draining:
        # a handler draining its own queue would wait for itself until the timeout
        raise gq.GQError("drain() called while this queue is already being drained "
                         "(from a handler?); the running drain runs new jobs too")
    store = q.store
    before = q.stats()["by_state"]
    worker = gq.Worker(q, concurrency=8, shutdown_timeout=0)
    state.draining += 1
    serving = asyncio.ensure_future(worker.serve())
    deadline = time.monotonic() + timeout
    try:
        while not serving.done():
            if include_delayed:
                await _promote_all_delayed(store)
            if _idle(worker, q, store):
                break
            if time.monotonic() > deadline:
                raise DrainTimeout(f"drain still running after {timeout:g}s: "
                                   f"{_describe_busy(q)}")
            await asyncio.sleep(0.002)
    finally:
        state.draining -= 1
        worker.stop()
        await serving
    after = q.stats()["by_state"]
    gained = {s: after[s] - before[s] for s in ("completed", "failed", "dead_letter",
                                               "cancelled")}
    return DrainResult(**gained, attempts=worker.completed)


async def _promote_all_delayed(store) -> None:
    """Make every delayed job (future run_at, retry back-off) ready now, as if
    the clock had reached its run_at (which becomes its updated_at)."""
    while True:
        due = store.next_due()
        if due is None or due <= time.time():
            return       # none, or due already: the worker promotes those itself
        await store.apromote_due(now=due)


def _idle(worker, q: gq.Queue, store) -> bool:
    """Nothing left to run. Checked in one synchronous step on the loop the
    worker serves on, so the worker cannot start or finish a job meanwhile:
    nothing held by the worker, no job of a handled, unpaused type in the ready
    index, none running in the store (a claim in flight shows up there), and no
    delayed job already due."""
    if worker.holding():
        return False
    paused = store.paused_types()
    if any(job_type in q.handlers and job_type not in paused
           for _, _, job_type, _ in store.ready_after(0, _ALL)):
        return False
    if any(state == State.RUNNING.code and job_type in q.handlers
           for (state, job_type), n in store.counts().items() if n):
        return False
    due = store.next_due()
    return due is None or due > time.time()


def _describe_busy(q: gq.Queue) -> str:
    running = q.list(state="running", limit=5)
    if running:
        return "still running: " + ", ".join(f"{j.id} ({j.type})" for j in running)
    return "jobs keep becoming runnable (a handler that submits work forever?)"


# -- inline mode --------------------------------------------------------------------

class _DrainState:
    __slots__ = ("draining", "inline_depth", "originals", "include_delayed")

    def __init__(self):
        self.draining = 0
        self.inline_depth = 0
        self.originals: dict[str, Any] = {}
        self.include_delayed = True


_STATES: "weakref.WeakKeyDictionary[gq.Queue, _DrainState]" = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _drain_state(q: gq.Queue) -> _DrainState:
    with _STATES_LOCK:
        state = _STATES.get(q)
        if state is None:
            state = _STATES[q] = _DrainState()
        return state


@contextlib.contextmanager
def inline(q: gq.Queue, *, include_delayed: bool = True) -> Iterator[gq.Queue]:
    """While active, `q.submit`, `q.submit_many` and their async twins store the
    job(s) and then drain the queue before returning, so the handler has run
    (and its outcome is stored) when the call returns. Jobs submitted by a
    handler during that drain run in the same drain. Delayed jobs run at once
    unless `include_delayed=False`."""
    state = _drain_state(q)
    if state.inline_depth == 0:
        state.include_delayed = include_delayed
        for name in ("submit", "submit_many"):
            state.originals[name] = getattr(q, name)
            setattr(q, name, _inline_sync(q, state, state.originals[name]))
        for name in ("asubmit", "asubmit_many"):
            state.originals[name] = getattr(q, name)
            setattr(q, name, _inline_async(q, state, state.originals[name]))
    state.inline_depth += 1
    try:
        yield q
    finally:
        state.inline_depth -= 1
        if state.inline_depth == 0:
            _stop_inline(q)


def _stop_inline(q: gq.Queue) -> None:
    with _STATES_LOCK:
        state = _STATES.pop(q, None)
    if state is not None:
        for name in state.originals:
            q.__dict__.pop(name, None)   # back to the class's methods


def _inline_sync(q, state, submit):
    def submit_and_run(*args, **kwargs):
        result = submit(*args, **kwargs)
        if not state.draining:           # inside a drain, that drain runs it
            drain(q, include_delayed=state.include_delayed)
        return result
    return submit_and_run


def _inline_async(q, state, asubmit):
    async def asubmit_and_run(*args, **kwargs):
        result = await asubmit(*args, **kwargs)
        if not state.draining:
            await adrain(q, include_delayed=state.include_delayed)
        return result
    return asubmit_and_run


# -- looking and asserting ------------------------------------------------------------

def jobs_of_type(q: gq.Queue, type: str, state: "State | str | None" = None) -> list[JobInfo]:
    """Every stored job of `type` (optionally in `state`), oldest first."""
    return q.list(state=state, type=type, limit=_ALL)


def last_error(q: gq.Queue, job_id: str) -> JobError | None:
    """The job's last failure (category, message, traceback), or None. A job
    that completed after failing has no error left."""
    return q.get(job_id).error


def _matches(actual: Any, expected: Any) -> bool:
    """A dict matches when every expected key is present with a matching value
    (extra keys are ignored); anything else must be equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _matches(actual[key], value) for key, value in expected.items())
    return actual == expected


_ANY = object()


def find_submitted(q: gq.Queue, type: str, *, payload: Any = _ANY, priority: int | None = None,
                   state: "State | str | None" = None, key: str | None = None) -> list[JobInfo]:
    """Jobs of `type` matching the given fields (see `assert_submitted`)."""
    found = []
    for job in jobs_of_type(q, type, state):
        if payload is not _ANY and not _matches(job.payload, payload):
            continue
        if priority is not None and job.priority != priority:
            continue
        if key is not None and job.key != key:
            continue
        found.append(job)
    return found


def assert_submitted(q: gq.Queue, type: str, *, payload: Any = _ANY, count: int | None = None,
                     priority: int | None = None, state: "State | str | None" = None,
                     key: str | None = None) -> list[JobInfo]:
    """Assert jobs of `type` were submitted; return the matching jobs.

    `payload`: a dict matches payloads holding at least those keys with those
    values (nested dicts alike); any other value must be equal. `count`: exactly
    that many match (default: at least one). `priority`, `state`, `key`: must
    equal. The failure message lists the jobs of that type that were found."""
    found = find_submitted(q, type, payload=payload, priority=priority, state=state, key=key)
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    wanted = "at least one" if count is None else f"exactly {count}"
    conditions = [f"{name}={value!r}" for name, value in
                  (("payload", payload), ("priority", priority), ("state", state),
                   ("key", key)) if value is not None and value is not _ANY]
    raise AssertionError(
        f"expected {wanted} {type!r} job(s)"
        + (f" with {', '.join(conditions)}" if conditions else "")
        + f", found {len(found)}. " + _describe_type(q, type))


def refute_submitted(q: gq.Queue, type: str, *, payload: Any = _ANY, **fields: Any) -> None:
    """Assert no job of `type` matching `payload` (and `priority`/`state`/`key`)
    was submitted."""
    found = find_submitted(q, type, payload=payload, **fields)
    if found:
        raise AssertionError(f"expected no matching {type!r} job, found {len(found)}: "
                             + "; ".join(_describe_job(j) for j in found[:10]))


def _describe_type(q: gq.Queue, type: str) -> str:
    jobs = jobs_of_type(q, type)
    if not jobs:
        others = sorted(q.stats()["by_type"])
        return f"No {type!r} jobs at all; stored types: {', '.join(others) or 'none'}."
    shown = "; ".join(_describe_job(j) for j in jobs[:10])
    more = f" (and {len(jobs) - 10} more)" if len(jobs) > 10 else ""
    return f"{type!r} jobs stored: {shown}{more}"


def _describe_job(job: JobInfo) -> str:
    return f"{job.id} {job.state.value} priority={job.priority} payload={job.payload!r}"
