"""`Queue`: the public face of a data dir — submit, look, cancel, retry, pause.

Safe to share between threads. Open one Queue per process after any fork: a
Queue used in a forked child raises instead of touching its parent's LMDB
environment.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import orjson

from gq import observe, results
from gq._core.plan import fast_specs, plain_spec
from gq.backpressure import DepthWatch
from gq.config import QueueConfig
from gq.errors import GQError, JobNotFound, ValidationError
from gq.jobs import JobInfo, State
from gq.store import opening
from gq.submission import SUBMIT_FIELDS, check_batch, check_type, known_types, make_spec

if TYPE_CHECKING:
    from gq.handlers import HandlerSpec

DEFAULT_DATA_DIR = "./gq-data"


class Queue:
    """A durable priority job queue stored in `path` (created if missing).

    Options (all keyword, all optional; durations in seconds): visibility_timeout,
    timeout, max_attempts, backoff_base, backoff_cap, lifetime, max_payload_bytes,
    depth_warning, max_depth, retention, map_size, idempotency_window,
    circuit_threshold (storage failures in a row before submissions are refused
    with StoreUnavailable), circuit_cooldown. See gq.config for defaults.
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_DATA_DIR, **options: Any):
        # `path` may also be a postgresql:// URL: the PostgreSQL store (docs/backends.md).
        self.config = QueueConfig.from_kwargs(**options)
        self.path = os.fspath(path)
        if not self.path:
            raise ValidationError("the data dir path is empty")
        self._pid = os.getpid()
        self._store = opening.acquire(self.path, self.config)
        self._closed = False
        self.handlers: dict[str, "HandlerSpec"] = {}
        self.schedules: list = []    # periodic schedules (gq.runtime.periodic), run by workers
        self._depth_watch = DepthWatch(self.config.depth_warning)

    # -- submitting -------------------------------------------------------------
    def submit(self, type: str, payload: Any = None, *, priority: int = 0,
               delay: float | None = None, run_at=None, depends_on: Iterable[str] | None = None,
               key: str | None = None, id: str | None = None, max_attempts: int | None = None,
               timeout: float | None = None, lifetime: float | None = None) -> str:
        """Store one job durably and return its id (after the fsync that holds it).

        `priority`: higher runs first (FIFO within a priority). `delay` (seconds) or
        `run_at` (aware datetime or epoch seconds): not before then. `depends_on`:
        ids that must complete first. `key`: idempotency key; while a job with that
        key is unfinished (or completed less than `idempotency_window` ago),
        submitting it again returns that job's id and stores nothing. `id`: a
        caller-chosen unique id. `lifetime`: seconds from now after which the job
        is dead-lettered if it has not finished (default: the handler's
        `lifetime`, else the queue's).
        """
        store = self._live_store()
        now = time.time()
        spec = make_spec(type, payload, priority=priority, delay=delay, run_at=run_at,
                         depends_on=depends_on, key=key, id=id, max_attempts=max_attempts,
                         timeout=timeout, lifetime=lifetime,
                         max_payload_bytes=self.config.max_payload_bytes, now=now)
        self._validate(spec.type, payload)
        self._apply_lifetime(spec)
        job_id = store.submit([spec], max_depth=self.config.max_depth, now=now,
                              key_window=self.config.idempotency_window)[0]
        self._depth_watch.after_submit(store)
        observe.jobs_submitted(spec.type)
        return job_id

    async def asubmit(self, type: str, payload: Any = None, **job: Any) -> str:
        """`submit` for coroutines: concurrent callers share one commit (one fsync)."""
        store = self._live_store()
        now = time.time()
        spec = None if job else plain_spec(type, payload, known_types(), orjson.dumps,
                                           self.config.max_payload_bytes)
        if spec is None:
            spec = make_spec(type, payload, max_payload_bytes=self.config.max_payload_bytes,
                             now=now, **job)
        if self.handlers:
            self._validate(spec.type, payload)
        self._apply_lifetime(spec)
        job_id = (await store.asubmit([spec], max_depth=self.config.max_depth, now=now,
                                      key_window=self.config.idempotency_window))[0]
        self._depth_watch.after_submit(store)
        observe.jobs_submitted(spec.type)
        return job_id

    def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Store many jobs in one transaction (one fsync): all of them or none.

        Each job is a mapping with the arguments of `submit` (`type` required).
        `depends_on` may name caller-chosen ids of other jobs in the same batch;
        a cycle is refused whole with CycleError.
        """
        store = self._live_store()
        specs, now = self._specs(jobs)
        if not specs:
            return []
        ids = store.submit(specs, max_depth=self.config.max_depth, now=now,
                           key_window=self.config.idempotency_window)
        self._depth_watch.after_submit(store)
        observe.batch_submitted(specs)
        return ids

    async def asubmit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """`submit_many` for coroutines."""
        store = self._live_store()
        specs, now = self._specs(jobs)
        if not specs:
            return []
        ids = await store.asubmit(specs, max_depth=self.config.max_depth, now=now,
                                  key_window=self.config.idempotency_window)
        self._depth_watch.after_submit(store)
        observe.batch_submitted(specs)
        return ids

    def _specs(self, jobs):
        if isinstance(jobs, (Mapping, str, bytes)):
            raise ValidationError("submit_many takes a list of job mappings")
        now = time.time()
        limit = self.config.max_payload_bytes
        jobs = jobs if jobs.__class__ is list else list(jobs)
        # Plain jobs take the compiled path; the rest (and every error) come here.
        specs = fast_specs(jobs, known_types(), orjson.dumps, limit)
        for n, spec in enumerate(specs):
            if spec is not None:
                continue
            job = jobs[n]
            if job.__class__ is not dict and not isinstance(job, Mapping):
                raise ValidationError(f"job #{n} of the batch is a {type(job).__name__}, "
                                      "not a mapping of submit arguments")
            if not job.keys() <= SUBMIT_FIELDS or "type" not in job:
                unknown = set(job) - SUBMIT_FIELDS
                raise ValidationError(
                    f"job #{n} of the batch has unknown field(s) {', '.join(sorted(unknown))}"
                    if unknown else f"job #{n} of the batch has no 'type'")
            try:
                specs[n] = make_spec(max_payload_bytes=limit, now=now, **job)
            except ValidationError as e:
                e.args = (f"job #{n} of the batch: {e}",) + e.args[1:]
                raise
        check_batch(specs)
        if self.handlers:
            for n, spec in enumerate(specs):
                self._validate(spec.type, jobs[n].get("payload"), f"job #{n} of the batch: ")
        if self.config.lifetime or any(h.lifetime for h in self.handlers.values()):
            for spec in specs:
                self._apply_lifetime(spec)
        return specs, now

    def _validate(self, job_type: str, payload, where: str = "") -> None:
        """Run the `validate=` of the handler registered here for `job_type`, if
        any, before anything is stored. A process without that handler (a
        producer only) submits unchecked; its worker checks before running."""
        handler = self.handlers.get(job_type)
        problem = None if handler is None else handler.validation_problem(payload)
        if problem is not None:
            raise ValidationError(f"{where}the payload of a {job_type!r} job failed its "
                                  f"handler's validate=: {problem}; nothing was stored")

    def _apply_lifetime(self, spec) -> None:
        """No lifetime of its own: the handler's for its type, else the queue's."""
        if spec.lifetime < 0 and (self.config.lifetime or self.handlers):
            handler = self.handlers.get(spec.type)
            lifetime = (handler.lifetime if handler is not None else None) or \
                self.config.lifetime
            if lifetime:
                spec.lifetime = lifetime

    # -- looking ----------------------------------------------------------------
    def get(self, job_id: str) -> JobInfo:
        """A snapshot of one job; JobNotFound if no such id is stored."""
        if not isinstance(job_id, str):
            raise ValidationError(f"job id must be a string, got {type(job_id).__name__}")
        record = self._live_store().get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return JobInfo(record)

    def result(self, job_id: str, timeout: float | None = None):
        """Wait until the job ends and return its result (the handler's return
        value). gq.JobFailed (`.info`: its JobInfo) if it ended failed,
        dead_letter or cancelled; TimeoutError if it has not ended within
        `timeout` seconds (None: no limit); JobNotFound if no such job. Woken by
        the commit that ends it, from any process (see gq.results)."""
        return results.wait(self._live_store(), job_id, timeout)

    async def aresult(self, job_id: str, timeout: float | None = None):
        """`result` for asyncio code: the wait does not hold the event loop."""
        return await results.await_(self._live_store(), job_id, timeout)

    def waits(self, job_id: str) -> dict:
        """What a job waits on: {"waiting_on": [{"id", "state"}] (dependencies not
        completed yet), "blocked": bool, "blocked_by": [chain, ...]}. A chain
        lists ids from a dependency that ended failed, dead_letter or cancelled
        down to this job: it cannot run until that dependency is retried and
        completes (see docs/scheduling.md)."""
        if not isinstance(job_id, str):
            raise ValidationError(f"job id must be a string, got {type(job_id).__name__}")
        waiting, chains = self._live_store().waiting_on(job_id)
        return {"waiting_on": [{"id": dep, "state": state} for dep, state in waiting],
                "blocked": bool(chains), "blocked_by": chains}

    def list(self, state: State | str | None = None, type: str | None = None,
             limit: int = 100) -> list[JobInfo]:
        """Jobs filtered by state and/or type, oldest first within each type."""
        code = None if state is None else State.parse(state).code
        if type is not None:
            check_type(type)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValidationError(f"limit must be a non-negative integer, got {limit!r}")
        return [JobInfo(r) for r in self._live_store().list(state=code, type=type, limit=limit)]

    def stats(self) -> dict:
        """Counts by state and by type, and the paused types:
        {"total", "by_state": {state: n}, "by_type": {type: {state: n}}, "paused": [...]}."""
        store = self._live_store()
        by_state = {s.value: 0 for s in State}
        by_type: dict[str, dict[str, int]] = {}
        for (code, job_type), n in store.counts().items():
            name = State(_state_name(code)).value
            by_state[name] += n
            by_type.setdefault(job_type, {})[name] = n
        return {"total": sum(by_state.values()), "by_state": by_state,
                "by_type": dict(sorted(by_type.items())),
                "paused": sorted(store.paused_types())}

    # -- operator actions ---------------------------------------------------------
    def cancel(self, job_id: str) -> JobInfo:
        """Cancel a pending, scheduled or running job (a running handler is stopped
        by its worker). InvalidTransition if the job already finished."""
        return JobInfo(self._live_store().cancel(job_id, now=time.time()))

    def retry(self, job_id: str) -> JobInfo:
        """Send a dead-lettered job back to `scheduled` with its attempts reset.
        NotRetriable for a `failed` job: fix the payload and submit a new one."""
        return JobInfo(self._live_store().retry(job_id, now=time.time()))

    def purge(self, older_than: float | None = None) -> int:
        """Delete finished jobs (completed, failed, cancelled) older than
        `older_than` seconds (default: the queue's `retention`). Returns the count."""
        from gq.config import check_duration

        age = self.config.retention if older_than is None else \
            check_duration("older_than", older_than, allow_none=False, allow_zero=True)
        store, total, now = self._live_store(), 0, time.time()
        while True:
            n = store.purge(older_than=age, now=now)
            total += n
            if n < 10_000:
                return total

    def pause(self, type: str) -> None:
        """Stop dispatching jobs of `type` (persisted; submissions still accepted)."""
        self._live_store().set_paused(check_type(type), True)

    def resume(self, type: str) -> None:
        """Restart dispatching jobs of `type`."""
        self._live_store().set_paused(check_type(type), False)

    def paused(self) -> frozenset[str]:
        return self._live_store().paused_types()

    # -- handlers (run by gq.Worker) --------------------------------------------------
    def handler(self, type: str, **options: Any) -> Callable:
        """Register the function that runs jobs of `type` (see gq.runtime.worker)."""
        from gq.handlers import HandlerSpec

        check_type(type)

        def register(fn: Callable) -> Callable:
            self.handlers[type] = HandlerSpec(type, fn, **options)
            return fn
        return register

    def periodic(self, cron: str | None = None, *, every: float | None = None, type: str,
                 payload: Any = None, priority: int = 0, name: str | None = None,
                 tz=None, lifetime: float | None = None, **handler_options: Any) -> Callable:
        """Submit a `type` job at every occurrence of `cron` (e.g. "*/5 * * * *",
        read in `tz`, default UTC) or every `every` seconds; workers serving this
        queue submit each occurrence exactly once (see gq.runtime.periodic). Used as a
        decorator it also registers the function as the handler of `type`."""
        from gq.runtime.periodic import register
        return register(self, cron, every=every, type=type, payload=payload,
                        priority=priority, name=name, tz=tz, lifetime=lifetime,
                        **handler_options)

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for readiness probes: False while the store cannot serve.

        The HTTP `/readyz` and operators' tools ask this. Not ready while the
        store's circuit breaker is open (see gq.store.breaker); once its cool-down
        is over, asking runs the probe transaction that can close it."""
        try:
            store = self._live_store()
            ready, reason = store.health()             # the circuit breaker's view
            if not ready:
                return ready, reason
            store.counts()                             # and a read that must work
        except GQError as exc:
            return False, str(exc)
        return True, "ok"

    # -- lifecycle ----------------------------------------------------------------
    def _live_store(self):
        if self._closed:
            raise GQError(f"the queue at {self.path} is closed")
        if os.getpid() != self._pid:
            raise GQError("this Queue was opened in a parent process; open a new "
                          "gq.Queue in each process after fork")
        return self._store

    def _reopen_after_fork(self) -> None:
        """In a forked child (a worker process of `processes=N`): open this
        process's own store; the parent's environment is never touched."""
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._store = opening.acquire(self.path, self.config)
        self._closed = False

    @property
    def store(self):
        """The underlying store (for workers and tools)."""
        return self._live_store()

    def close(self) -> None:
        """Wait for writes in flight, then release the data dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() == self._pid:
            opening.release(self._store)

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<gq.Queue {self.path!r}{' closed' if self._closed else ''}>"


def _state_name(code: int) -> str:
    from gq._core.states import STATE_NAMES
    return STATE_NAMES[code]
