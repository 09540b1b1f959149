"""Worker: claim ready jobs, run their handlers, record outcomes, drain on SIGTERM.

One event loop (uvloop when installed) per worker process. The dispatcher keeps
a compiled `ReadyHeap` mirroring the store's ready index; it learns about new
work by reading the index after the last seq it saw, woken by the store's
doorbell (a datagram from whichever process committed the work), with a slow
poll as a safety net. Claims and completions go through the group-commit
writer, so a busy worker batches many of them per fsync.

Every duration here (timeouts, heartbeats, leases) is on the monotonic clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import time
import traceback

import orjson

from gq import observe, plain_json
from gq._core import states as S
from gq._core.heap import ReadyHeap
from gq.config import (CONCURRENCY_DEFAULT, PROCESSES_DEFAULT, SHUTDOWN_TIMEOUT_DEFAULT,
                       check_duration, check_positive_int)
from gq.errors import (GQError, PermanentError, PersistenceError, TemporaryError,
                       ValidationError)
from gq.jobs import Category, JobError
from gq.runtime.periodic import PeriodicScheduler
from gq.runtime.processes import EXIT_REPLACE, start_watchdog
from gq.runtime.claims import QuotaBook
from gq.runtime.recovery import RECOVERY_INTERVAL, reclaim_after_reboot, recover
from gq.retry import backoff_delay, should_retry
from gq.runtime.sweeps import sweep
from gq.runtime.threads import DaemonThreadPool

log = logging.getLogger("gq.worker")

HEARTBEAT_INTERVAL_DEFAULT = 1.0   # how often running jobs are checked (cancel, lease)
RETENTION_INTERVAL = 3600.0        # how often a worker purges jobs past the retention
POLL_INTERVAL = 1.0                # safety net should a wake-up datagram be lost
READY_SCAN_LIMIT = 10_000          # ready-index rows read per refresh step
STATE_CHECK_MIN_GAP = 0.05         # doorbell-driven cancel checks, at most this often
OUTCOME_RETRY_DELAY = 0.5          # after a storage failure, before outcomes are retried
# An outcome that would commit alone (no ready job to claim in its slot) waits
# up to this long for a claim to carry it: at a steady trickle of work, one
# commit per job instead of two, and the disk's commit rate is what bounds an
# idle worker's submit-to-start latency. Never when work is waiting (a drain
# commits at once) nor while stopping. Until it is durable the job stays
# `running`: a crash in that window runs it again, as with any crash mid-job.
OUTCOME_LINGER = 0.005


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


class _Running:
    """Book-keeping of one job this worker holds."""

    __slots__ = ("record", "task", "handler_task", "stop_reason", "finishing", "deadline")

    def __init__(self, record):
        self.record = record
        self.task: asyncio.Task | None = None          # the _run coroutine
        self.handler_task: asyncio.Future | None = None  # a sync handler's thread
        self.stop_reason: str | None = None   # "timeout", "cancelled", "lease lost", "shutdown"
        self.finishing = False                # the handler returned: too late to stop it
        self.deadline = float("inf")          # monotonic time its execution timeout passes


class Worker:
    """Runs the handlers registered on `queue` (see `Queue.handler`).

    concurrency: jobs run at once by this process. shutdown_timeout: how long a
    graceful drain waits for running jobs before cancelling them (they stay
    `running` and are rescheduled by recovery on the next start).
    http: "HOST:PORT" to serve the HTTP API, /metrics, probes and the dashboard
    on (see gq.http.server); http_token: bearer token wanted on /v1/* (default: the
    GQ_TOKEN environment variable, if set).
    """

    def __init__(self, queue, *, concurrency: int = CONCURRENCY_DEFAULT,
                 processes: int = PROCESSES_DEFAULT,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT_DEFAULT,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL_DEFAULT,
                 instance_id: str | None = None, rng=None, supervised: bool = False,
                 http: str | None = None, http_token: str | None = None):
        self.queue = queue
        self.concurrency = check_positive_int("concurrency", concurrency, allow_none=False)
        self.processes = check_positive_int("processes", processes, allow_none=False)
        self.shutdown_timeout = check_duration("shutdown_timeout", shutdown_timeout,
                                               allow_none=False, allow_zero=True)
        self.heartbeat_interval = check_duration("heartbeat_interval", heartbeat_interval,
                                                 allow_none=False)
        if not queue.handlers:
            raise ValidationError("the queue has no handlers: register some with "
                                  "@queue.handler(type) before starting a Worker")
        if http is not None:
            from gq.http.server import parse_bind
            parse_bind(http)      # a bad address fails here, not after startup
        self.http = http
        self.http_token = http_token if http_token is not None else \
            os.environ.get("GQ_TOKEN") or None
        self._http_server = None
        self._recorder = observe.WorkerRecorder(self.concurrency)   # metrics, batched
        self.instance_id = instance_id or \
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._rng = rng
        self._heap = ReadyHeap()
        self._last_seen = 0
        self._running: dict[str, _Running] = {}
        self._running_by_type: dict[str, int] = {}
        self._paused_by_operator: frozenset[str] = frozenset()
        self._paused_by_limit: set[str] = set()
        self._stopping = False
        self._claims = 0                              # claims sent, not yet answered
        self._claims_settled: asyncio.Event | None = None
        self._handing_back: list[asyncio.Task] = []   # claims answered after the stop
        self._left_running = False    # a hand-back failed: recovery reschedules those
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._pool = DaemonThreadPool(name="gq-handler")
        self._last_state_check = 0.0
        self._last_extend = 0.0
        self._last_recovery = 0.0
        self._deaths = None            # DeathWatch, from serve()
        self._last_purge = time.monotonic()
        self._outcomes: list = []                 # (running, outcome) waiting for a commit
        self._outcome_writer: asyncio.Task | None = None
        self._outcomes_retry_at = 0.0   # after a failed outcome commit: not before then
        self._doorbell = None          # this worker's wake-up socket (see serve)
        self._new_work = True          # the doorbell rang since the last heap refresh
        self._pulls = False            # the store picks jobs by quota (PostgreSQL): no heap
        self._quotas = QuotaBook()     # what claims in flight were promised (pull mode)
        self.completed = 0     # attempts recorded by this worker (all outcomes)
        # A child of `processes=N`: a handler that cannot be stopped ends the process
        # (the supervisor replaces it); see gq.runtime.processes.
        self._supervised = supervised
        self._exit_code = 0

    # -- running ------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then drain gracefully. Blocks; returns 0."""
        if self.processes > 1:
            from gq.runtime.processes import run_processes
            return run_processes(self)
        try:
            import uvloop
            return uvloop.run(self.serve(handle_signals=True))
        except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
            return asyncio.run(self.serve(handle_signals=True))

    @property
    def stopping(self) -> bool:
        """True once the worker began to drain (a signal, or `stop()`)."""
        return self._stopping

    def stop(self) -> None:
        """Ask a serving worker to drain and return (thread-safe)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._begin_shutdown)
        else:
            self._stopping = True

    async def serve(self, handle_signals: bool = False) -> int:
        """Serve inside an existing event loop until `stop()` (or a signal)."""
        self._loop = loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._claims_settled = asyncio.Event()
        self._claims_settled.set()
        if self.http is not None:
            from gq.http.server import serve_worker_http
            self._http_server = await serve_worker_http(self)
        store = self.queue.store
        self._pulls = store.capabilities.claims_by_quota
        sock = self._doorbell = store.doorbell.listen(self.instance_id)
        loop.add_reader(sock.fileno(), self._on_doorbell, sock)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._begin_shutdown)
        log.info("Worker %s started (concurrency %d, handlers: %s)", self.instance_id,
                 self.concurrency, ", ".join(sorted(self.queue.handlers)))
        liveness = store.liveness.announce(self.instance_id)
        self._deaths = store.liveness.death_watch(self.instance_id)
        if self._deaths is not None:
            self._deaths.noticed()   # the dead known now are handled by the pass below
        reclaimed = reclaim_after_reboot(store) + recover(store)
        log.info("Recovery completed, %d jobs reclaimed", len(reclaimed))
        self._last_recovery = time.monotonic()
        heartbeat = loop.create_task(self._heartbeat_loop())
        periodic = loop.create_task(PeriodicScheduler(self.queue).run()) \
            if self.queue.schedules else None
        if self._supervised:
            start_watchdog(self)
        try:
            while not self._stopping:
                self._wake.clear()
                next_due = await self._dispatch()
                if self._stopping:
                    break
                try:
                    await asyncio.wait_for(self._wake.wait(), self._idle_timeout(next_due))
                except asyncio.TimeoutError:
                    pass
            await self._drain()
        finally:
            heartbeat.cancel()
            if periodic is not None:
                periodic.cancel()
            self._recorder.flush(0, force=True)
            if self._http_server is not None:
                await self._http_server.stop()
            liveness.release(leftover=bool(self._running) or self._left_running)
            loop.remove_reader(sock.fileno())
            store.doorbell.unlisten(sock)
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            self._pool.shutdown()
        return self._exit_code

    def _on_doorbell(self, sock) -> None:
        self._rang()
        self._wake.set()

    def _rang(self) -> bool:
        """Whether the doorbell rang since the heap was last refreshed. Reads the
        socket itself too: a ring may not have reached the loop's callback yet."""
        try:
            while self._doorbell.recv(64):
                self._new_work = True
        except (BlockingIOError, InterruptedError):
            pass
        return self._new_work

    def _begin_shutdown(self) -> None:
        if not self._stopping:
            self._stopping = True
            # Nothing claimed from here on starts: a claim still in flight hands
            # its jobs back (_started), so this line is true at once.
            log.info("Graceful shutdown initiated")
        if self._wake is not None:
            self._wake.set()

    async def _claiming(self, write):
        """Await `write`, a store write that claims jobs, counted as in flight."""
        self._claims += 1
        self._claims_settled.clear()
        try:
            return await write
        finally:
            self._claims -= 1
            if not self._claims:
                self._claims_settled.set()

    @staticmethod
    def _idle_timeout(next_due: float | None) -> float:
        timeout = POLL_INTERVAL
        if next_due is not None:
            timeout = min(timeout, max(0.0, next_due - time.time()))
        return timeout

    # -- dispatch -------------------------------------------------------------------
    async def _dispatch(self) -> float | None:
        """Promote due delayed jobs, learn new ready ones, fill free slots.
        Returns when the next delayed job falls due (None: none waiting)."""
        store = self.queue.store
        next_due = store.next_due()
        if next_due is not None and next_due <= time.time():
            await store.apromote_due(now=time.time())
            next_due = store.next_due()
        await self._fill_slots(store)
        return next_due

    async def _fill_slots(self, store) -> None:
        self._refresh_heap(store)
        if self._running and time.monotonic() - self._last_state_check > STATE_CHECK_MIN_GAP:
            self._check_running_states()
        self._recorder.flush(len(self._running))
        # Outcomes not yet handed to a commit ride along with this claim: one
        # commit records them and refills the slots they free.
        carried = self._outcomes if time.monotonic() >= self._outcomes_retry_at else []
        free = self.concurrency - len(self._running) + len(carried)
        if free <= 0:
            return
        candidates = self._pick(free)
        if not candidates:
            return
        if carried:
            self._outcomes = []
            stale = await self._commit_outcomes(carried, candidates)
        else:
            visibility = self.queue.config.visibility_timeout
            try:
                claimed = await self._claiming(store.aclaim(
                    self._claim_args(candidates), owner=self.instance_id,
                    lease_deadline=time.monotonic() + visibility, now=time.time()))
            except GQError as e:      # the store failed: keep serving, try again later
                log.error("claim failed: %s", e)
                self._unpick(candidates)
                return
            stale = self._started(candidates, claimed)
        if stale:
            self._wake.set()   # some were stale: look again at once

    def _refresh_heap(self, store) -> None:
        self._new_work = False
        handlers = self.queue.handlers
        while not self._pulls:
            # a ready-feed store (capabilities.ready_feed) parses its rows in the core
            n, last = store.push_ready_after(self._heap, self._last_seen, READY_SCAN_LIMIT,
                                             handlers)
            if n:
                self._last_seen = last
            if n < READY_SCAN_LIMIT:
                break
        paused = store.paused_types()
        if paused != self._paused_by_operator:
            self._paused_by_operator = paused
            self._sync_heap_pauses()

    def _sync_heap_pauses(self) -> None:
        wanted = set(self._paused_by_operator) | self._paused_by_limit
        for job_type in self._heap.paused_types() - wanted:
            self._heap.resume(job_type)
        for job_type in wanted:
            self._heap.pause(job_type)

    def _pick(self, free: int) -> list:
        """Pop up to `free` runnable entries, honouring per-type limits (a type at
        its limit is paused in the heap, so it costs nothing to skip). A store
        that picks jobs itself gets a quota instead (gq.runtime.claims)."""
        if self._pulls:
            return self._quotas.take(self.queue.handlers, self._running_by_type, free)
        picked = []
        handlers = self.queue.handlers
        counts = dict(self._running_by_type)
        while len(picked) < free:
            entry = self._heap.pop()
            if entry is None:
                break
            job_type = entry[1]
            picked.append(entry)
            counts[job_type] = counts.get(job_type, 0) + 1
            limit = handlers[job_type].concurrency
            if limit is not None and counts[job_type] >= limit:
                self._paused_by_limit.add(job_type)
                self._heap.pause(job_type)
        return picked

    def _start(self, record) -> None:
        self._recorder.started(record)
        running = _Running(record)
        self._running[record.id] = running
        self._running_by_type[record.type] = self._running_by_type.get(record.type, 0) + 1
        running.task = self._loop.create_task(self._run(running))

    def _forget(self, running: _Running) -> None:
        record = running.record
        self._running.pop(record.id, None)
        n = self._running_by_type.get(record.type, 1) - 1
        self._running_by_type[record.type] = n
        if record.type in self._paused_by_limit:
            limit = self.queue.handlers[record.type].concurrency
            if limit is None or n < limit:
                self._paused_by_limit.discard(record.type)
                self._sync_heap_pauses()
        if self._wake is not None:
            self._wake.set()

    # -- running one job ------------------------------------------------------------
    def _settings(self, record):
        spec = self.queue.handlers[record.type]
        config = self.queue.config
        timeout = record.timeout if record.timeout > 0 else (spec.timeout or config.timeout)
        max_attempts = record.max_attempts or spec.max_attempts or config.max_attempts
        return spec, timeout, max_attempts

    async def _run(self, running: _Running) -> None:
        record = running.record
        spec, timeout, max_attempts = self._settings(record)
        try:
            try:
                job = Job(record, max_attempts)
            except Exception as e:    # a payload that does not decode cannot run
                problem = f"{type(e).__name__}: {e}"
            else:
                problem = spec.validation_problem(job.payload)
            if problem is not None:
                outcome = self._failure(record, spec, max_attempts, Category.PERMANENT,
                                        f"validation failed: {problem}", None)
            else:
                began = time.monotonic()
                outcome = await self._call_handler(running, spec, job, timeout, max_attempts)
                if outcome is not None:
                    self._recorder.ran(record.type, time.monotonic() - began)
        except BaseException:
            self._forget(running)
            raise
        running.finishing = True
        if outcome is None:
            self._forget(running)   # cancelled, lease lost, or shutdown: nothing to record
            return
        # The slot stays held until the outcome is durable (see _commit_outcomes).
        self._outcomes.append((running, outcome))
        if self._outcome_writer is None or self._outcome_writer.done():
            self._outcome_writer = self._loop.create_task(self._write_outcomes())

    async def _write_outcomes(self) -> None:
        """Record the outcomes of every job that ended since the last commit in one
        transaction, which also claims jobs for the slots they free. With no job
        ready to claim, first give one OUTCOME_LINGER to arrive: the dispatcher's
        claim then carries these outcomes (see _fill_slots)."""
        store = self.queue.store
        await asyncio.sleep(0)   # let the other jobs ending in this loop turn queue up
        lingered = None     # the outcome list that already had its linger
        while self._outcomes:
            wait = self._outcomes_retry_at - time.monotonic()
            if wait <= 0 and self._outcomes is not lingered and not (
                    self._stopping or self._pulls or self._rang() or self._heap.peek()):
                wait, lingered = OUTCOME_LINGER, self._outcomes
            if wait > 0:
                await asyncio.sleep(wait)
                continue     # the dispatcher's claim may have taken them meanwhile
            batch, self._outcomes = self._outcomes, []
            if not self._stopping and self._rang():
                # work became ready since the last look: learn it first, so the
                # freed slots go to the best job committed so far
                self._refresh_heap(store)
            candidates = [] if self._stopping else self._pick(len(batch))
            await self._commit_outcomes(batch, candidates)

    async def _commit_outcomes(self, batch, candidates) -> bool:
        """One commit: the outcomes of `batch` ((running, outcome) pairs) and the
        claim of `candidates`. Returns whether some candidates were stale. After a
        storage failure the outcomes wait again, retried in OUTCOME_RETRY_DELAY,
        rather than leave the jobs to their lease and run them twice."""
        store = self.queue.store
        finishes = [(r.record.id, r.record.attempts, *outcome) for r, outcome in batch]
        try:
            write = store.afinish_many_and_claim(
                finishes, owner=self.instance_id, now=time.time(),
                candidates=self._claim_args(candidates),
                lease_deadline=time.monotonic() + self.queue.config.visibility_timeout)
            refused, claimed = await (self._claiming(write) if candidates else write)
        except PersistenceError as e:
            log.error("could not record the outcomes of %d jobs: %s; retrying in %gs",
                      len(batch), e, OUTCOME_RETRY_DELAY)
            self._unpick(candidates)
            self._outcomes[:0] = batch
            self._outcomes_retry_at = time.monotonic() + OUTCOME_RETRY_DELAY
            if self._outcome_writer is None or self._outcome_writer.done():
                self._outcome_writer = self._loop.create_task(self._write_outcomes())
            return False
        except GQError as e:
            log.error("could not record the outcomes of %d jobs: %s", len(batch), e)
            refused, claimed = {}, []
        completed_by_type: dict[str, int] = {}
        for running, outcome in batch:
            record = running.record
            problem = refused.get(record.id)
            if problem is not None:
                log.warning("%s", problem, extra={"job_id": record.id,
                                                  "job_type": record.type,
                                                  "attempt": record.attempts})
            else:
                self.completed += 1
                if outcome[0] == S.COMPLETED:
                    completed_by_type[record.type] = \
                        completed_by_type.get(record.type, 0) + 1
            self._forget(running)
        if completed_by_type:
            self._recorder.completed(completed_by_type)
        return self._started(candidates, claimed)

    def _started(self, candidates, claimed) -> bool:
        """Start what a claim of `candidates` returned; True if some were stale
        (the heap's that were skipped go back to it, see _hold_back). A claim
        answered after the stop began hands its jobs back instead."""
        if self._stopping and claimed:
            self._handing_back.append(self._loop.create_task(self._hand_back(claimed)))
            claimed = []
        for record in claimed:
            self._start(record)
        self._recorder.flush(len(self._running))
        self._quotas.settle(candidates)
        if len(claimed) < len(candidates) and not self._pulls:
            self._hold_back(candidates, claimed)
            return True
        return False

    async def _hand_back(self, records) -> None:
        """Jobs claimed as the stop began will not run here: back to scheduled
        with their attempt given back, for the next worker to start."""
        jobs = [(record.id, record.attempts) for record in records]
        try:
            handed = await self.queue.store.ahand_back(jobs, owner=self.instance_id,
                                                       now=time.time())
        except GQError as e:
            self._left_running = True
            log.error("could not hand back %d jobs claimed as the worker stopped: %s; "
                      "they stay running and are rescheduled when a worker next starts",
                      len(jobs), e)
            return
        log.info("handed back %d jobs claimed as the worker stopped; they keep their "
                 "attempts and run on the next worker", len(handed))

    def _unpick(self, candidates) -> None:
        """A claim of `candidates` failed: release their quota, back to the heap."""
        self._quotas.settle(candidates)
        for entry in [] if self._pulls else candidates:
            self._heap.push(*entry)

    def _claim_args(self, candidates):
        """Heap entries as (id, ready_seq) pairs; a quota as it is."""
        return candidates if self._pulls else [(c[0], c[3]) for c in candidates]

    def _hold_back(self, candidates, claimed) -> None:
        """Candidates a claim skipped because their type was paused in the
        meantime (the claim checks inside its transaction) go back to the heap,
        to run once the type is resumed; the stale ones are dropped."""
        got = {record.id for record in claimed}
        paused = self.queue.store.paused_types()
        for entry in candidates:
            if entry[0] not in got and entry[1] in paused:
                self._heap.push(*entry)
        if paused != self._paused_by_operator:
            self._paused_by_operator = paused
            self._sync_heap_pauses()

    async def _call_handler(self, running, spec, job, timeout, max_attempts):
        """Run the handler under its execution timeout; return the outcome, or None
        when the attempt was stopped from outside (cancel, lost lease, shutdown).

        An async handler runs inside this job's own task (no extra task per job):
        a timer cancels that task when the timeout passes, and the reason set by
        whoever cancelled tells a timeout from a cancel. A sync handler runs on a
        daemon thread; on timeout its thread is abandoned, its slot freed."""
        record = running.record
        running.deadline = time.monotonic() + timeout
        timer = self._loop.call_later(timeout, self._stop_handler, record.id, "timeout")
        try:
            if spec.is_async:
                value = await spec.fn(job)
            else:
                running.handler_task = self._pool.submit(self._loop, spec.fn, job)
                value = await running.handler_task
        except asyncio.CancelledError:
            reason = running.stop_reason
            if reason is None:
                raise          # the worker itself is being torn down
            _uncancel()
            if reason == "timeout" and self._supervised and not spec.is_async:
                # its thread cannot be stopped: drain, then let the supervisor
                # replace this process
                self._exit_code = EXIT_REPLACE
                self._begin_shutdown()
            if reason == "timeout":
                return self._failure(record, spec, max_attempts, Category.TIMEOUT,
                                     f"execution timeout after {timeout:g}s; handler "
                                     "cancelled", None)
            log.info("job %s (%s) attempt %d stopped: %s", record.id, record.type,
                     record.attempts, reason,
                     extra={"job_id": record.id, "job_type": record.type,
                            "attempt": record.attempts, "reason": reason})
            return None
        except TemporaryError as exc:
            return self._failure(record, spec, max_attempts, Category.TEMPORARY,
                                 f"{type(exc).__name__}: {exc}", None)
        except PermanentError as exc:
            return self._failure(record, spec, max_attempts, Category.PERMANENT,
                                 f"{type(exc).__name__}: {exc}", None)
        except Exception as exc:   # anything else is a bug or a crash: `system`
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return self._failure(record, spec, max_attempts, Category.SYSTEM,
                                 f"{type(exc).__name__}: {exc}", tb)
        finally:
            timer.cancel()
        try:
            return S.COMPLETED, plain_json.encode(value, "result"), b"", 0.0
        except ValidationError as e:   # stored changed is worse than not stored
            return self._failure(record, spec, max_attempts, Category.PERMANENT,
                                 f"the handler's result is not plain JSON: {e}", None)

    def _failure(self, record, spec, max_attempts, category, message, tb):
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
        return state, b"", error, run_at

    # -- heartbeats, cancellation, leases ---------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await sweep(self.queue)    # lifetimes, blocked and depth gauges
            if time.monotonic() - self._last_purge >= RETENTION_INTERVAL:
                self._last_purge = time.monotonic()
                try:
                    n = await self.queue.store.apurge(
                        older_than=self.queue.config.retention, now=time.time())
                    if n:
                        log.info("retention: purged %d finished jobs older than %gs", n,
                                 self.queue.config.retention)
                except GQError as e:
                    log.error("retention purge failed: %s", e)
            if time.monotonic() - self._last_recovery >= RECOVERY_INTERVAL or \
                    (self._deaths is not None and self._deaths.noticed()):
                self._last_recovery = time.monotonic()
                try:
                    if recover(self.queue.store):
                        self._wake.set()
                except GQError as e:
                    log.error("recovery pass failed: %s", e)
            if not self._running:
                continue
            self._check_running_states()
            visibility = self.queue.config.visibility_timeout
            if time.monotonic() - self._last_extend >= visibility / 3:
                self._last_extend = time.monotonic()
                leases = [(job_id, r.record.attempts) for job_id, r in self._running.items()]
                try:
                    lost = await self.queue.store.aextend(
                        leases, owner=self.instance_id,
                        lease_deadline=time.monotonic() + visibility)
                except GQError as e:
                    log.error("lease extension failed: %s", e)
                    continue
                for job_id in lost:
                    self._stop_handler(job_id, "lease lost")

    def _check_running_states(self) -> None:
        """Stop handlers of jobs that are no longer ours (cancelled, recovered)."""
        self._last_state_check = time.monotonic()
        states = self.queue.store.states_of(list(self._running))
        for job_id, running in list(self._running.items()):
            state, attempts, owner = states.get(job_id, (None, None, None))
            if state == S.RUNNING and attempts == running.record.attempts \
                    and owner == self.instance_id:
                continue
            self._stop_handler(job_id, "cancelled" if state == S.CANCELLED else
                               "lifetime ended" if state == S.DEAD_LETTER else "lease lost")

    def _stop_handler(self, job_id: str, reason: str) -> None:
        running = self._running.get(job_id)
        if running is None or running.stop_reason is not None or running.finishing:
            return
        running.stop_reason = reason
        # a sync handler: cancel the await of its thread; async: the job's task
        target = running.handler_task if running.handler_task is not None else running.task
        target.cancel()

    # -- graceful drain ---------------------------------------------------------------
    async def _drain(self) -> None:
        await self._claims_settled.wait()     # claims in flight answer (and hand back)
        if self._handing_back:
            await asyncio.gather(*self._handing_back)
        if not self._running:
            return
        log.info("Waiting for %d jobs to complete", len(self._running))
        pending = await self._wait_running(time.monotonic() + self.shutdown_timeout)
        if pending:
            log.warning("shutdown timeout (%gs) reached: cancelling %d running jobs; they "
                        "stay running and are rescheduled when a worker next starts",
                        self.shutdown_timeout, len(pending))
            for running in list(self._running.values()):
                self._stop_handler(running.record.id, "shutdown")
            await self._wait_running(time.monotonic() + 5.0)

    async def _wait_running(self, deadline: float) -> list:
        """Wait until every held job has ended and its outcome is written (or the
        deadline passes); return the _run tasks still going."""
        while self._running and time.monotonic() < deadline:
            waiting = [r.task for r in self._running.values() if r.task and not r.task.done()]
            if self._outcome_writer is not None and not self._outcome_writer.done():
                waiting.append(self._outcome_writer)
            if not waiting:
                await asyncio.sleep(0.01)
                continue
            await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        return [r.task for r in self._running.values() if r.task and not r.task.done()]


def _uncancel() -> None:
    """Python 3.11+ counts cancel requests; having handled one, reset the count so
    later awaits in this task behave normally."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()
