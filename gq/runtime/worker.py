"""Worker: claim ready jobs, run their handlers, record outcomes, drain on SIGTERM.

One event loop (uvloop when installed) per worker process. The worker keeps the
life cycle (serve/run/stop/drain, signals, start-up recovery) and the book of
the jobs it holds, and wires the units together:

- a dispatcher (gq.runtime.dispatch) chooses what to claim, picked once from
  `store.capabilities`: a heap mirroring a ready-feed store's index, or claim
  quotas for a store that picks jobs itself;
- a Runner (gq.runtime.execution) runs one handler and decides its outcome;
- an OutcomeWriter (gq.runtime.outcomes) batches outcomes into commits that
  also claim the next jobs;
- the heartbeat chores (gq.runtime.maintenance) extend leases, check for
  cancels, recover, sweep and purge.

The worker learns about new work from the store's doorbell (a datagram from
whichever process committed the work), with a slow poll as a safety net.

No store call blocks the event loop: every call that can wait on a lock, the
network or an fsync runs off it, through the store's `a`-prefixed coroutine
twin (aclaim, afinish_many_and_claim, aextend, apromote_due, apurge,
aexpire_lifetimes, ahand_back) or a thread (states_of, recovery; next_due and
paused_types through gq.store.loop.store_read). The exceptions are the reads
of a store whose reads are local and never wait (`capabilities.local_reads`,
LMDB), made in place on the dispatch path: see HeapDispatcher.refresh.

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

from gq import observe
from gq.config import (CONCURRENCY_DEFAULT, HEARTBEAT_INTERVAL_DEFAULT, PROCESSES_DEFAULT,
                       SHUTDOWN_TIMEOUT_DEFAULT, WorkerConfig)
from gq.errors import GQError, PersistenceError, ValidationError
from gq.jobs import Category
from gq.runtime.dispatch import dispatcher_for
from gq.runtime.execution import Job, Outcome, Running, Runner
from gq.runtime.maintenance import (LeaseExtension, LostClaims, Maintenance, RecoveryPass,
                                    RetentionPurge, StateCheck)
from gq.runtime.outcomes import OutcomeWriter
from gq.runtime.periodic import PeriodicScheduler
from gq.runtime.recovery import recover_at_start
from gq.runtime.selection import check_types, select_handlers
from gq.runtime.supervisor import EXIT_REPLACE, run_processes
from gq.runtime.threads import DaemonThreadPool
from gq.runtime.watchdog import start_watchdog
from gq.store.loop import store_read

__all__ = ["Job", "Worker", "HEARTBEAT_INTERVAL_DEFAULT"]

log = logging.getLogger("gq.worker")



class Worker:
    """Runs the handlers registered on `queue` (see `Queue.handler`).

    concurrency: jobs run at once by this process. shutdown_timeout: how long a
    graceful drain waits for running jobs before cancelling them (they stay
    `running` and are rescheduled by recovery on the next start).
    http: "HOST:PORT" to serve the HTTP API, /metrics, probes and the dashboard
    on (see gq.http.server); http_token: bearer token wanted on /v1/* (default: the
    GQ_TOKEN environment variable, if set). types: job types or glob patterns
    (["email.*"]) this worker serves, default every handler: jobs of other types
    wait for the workers that serve them (see gq.runtime.selection).
    """

    def __init__(self, queue, *, concurrency: int = CONCURRENCY_DEFAULT,
                 processes: int = PROCESSES_DEFAULT,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT_DEFAULT,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL_DEFAULT,
                 instance_id: str | None = None, rng=None, supervised: bool = False,
                 http: str | None = None, http_token: str | None = None,
                 types=None):
        self.queue = queue
        self.config = config = WorkerConfig.validated(
            concurrency=concurrency, processes=processes, shutdown_timeout=shutdown_timeout,
            heartbeat_interval=heartbeat_interval)
        self.concurrency = config.concurrency
        self.processes = config.processes
        self.shutdown_timeout = config.shutdown_timeout
        self.heartbeat_interval = config.heartbeat_interval
        if not queue.handlers:
            raise ValidationError("the queue has no handlers: register some with "
                                  "@queue.handler(type) before starting a Worker")
        self.types = check_types(types)
        self.handlers = select_handlers(queue.handlers, self.types)   # what it claims
        if http is not None:
            # imported here: the HTTP server (aiohttp) loads only when it is asked for
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
        self._running: dict[str, Running] = {}
        self._running_by_type: dict[str, int] = {}
        self._stopping = False
        self._claims = 0                              # claims sent, not yet answered
        self._claims_begun = 0
        self._lost_claims = LostClaims(
            queue, self.instance_id, self._running,
            lambda: None if self._claims else self._claims_begun)
        self._claims_settled: asyncio.Event | None = None
        self._handing_back: list[asyncio.Task] = []   # claims answered after the stop
        self._left_running = False    # a hand-back failed: recovery reschedules those
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._pool = DaemonThreadPool(name="gq-handler")
        self._doorbell = None          # this worker's wake-up socket (see serve)
        self._new_work = True          # the doorbell rang since the last refresh
        self.runner = Runner(queue, recorder=self._recorder, pool=self._pool, rng=rng,
                             on_unstoppable=self._on_unstoppable)
        # chosen once, from store.capabilities
        self.dispatcher = dispatcher_for(queue, self.handlers,
                                         scan_limit=config.ready_scan_limit)
        self.outcomes = OutcomeWriter(
            queue, self.dispatcher, owner=self.instance_id, config=config,
            recorder=self._recorder, running_by_type=self._running_by_type,
            claiming=self._claiming, release=self._forget, started=self._started,
            stopping=lambda: self._stopping, rang=self._rang, refresh=self._refresh)
        self._states = StateCheck(queue, self.instance_id, self._running,
                                  self._stop_handler, config.state_check_min_gap)
        # A child of `processes=N`: a handler that cannot be stopped ends the process
        # (the supervisor replaces it); see gq.runtime.supervisor.
        self._supervised = supervised
        self._exit_code = 0

    @property
    def completed(self) -> int:
        """Attempts recorded by this worker (all outcomes)."""
        return self.outcomes.completed

    # -- running ------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then drain gracefully. Blocks; returns 0."""
        if self.processes > 1:
            return run_processes(self, self._child)
        try:
            # imported here: uvloop is optional (a dependency on POSIX only)
            import uvloop
            return uvloop.run(self.serve(handle_signals=True))
        except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
            return asyncio.run(self.serve(handle_signals=True))

    def _child(self, instance_id: str) -> "Worker":
        """The worker of one child process of `processes=N`."""
        return Worker(self.queue, concurrency=self.concurrency,
                      shutdown_timeout=self.shutdown_timeout,
                      heartbeat_interval=self.heartbeat_interval,
                      instance_id=instance_id, supervised=True, types=self.types)

    @property
    def stopping(self) -> bool:
        """True once the worker began to drain (a signal, or `stop()`)."""
        return self._stopping

    def holding(self) -> bool:
        """Whether the worker holds jobs: running, or with an outcome not yet written."""
        return bool(self._running) or bool(self.outcomes.pending)

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
            # imported here: the HTTP server (aiohttp) loads only when it is asked for
            from gq.http.server import serve_worker_http
            self._http_server = await serve_worker_http(self)
        store = self.queue.store
        sock = self._doorbell = store.doorbell.listen(self.instance_id)
        loop.add_reader(sock.fileno(), self._on_doorbell, sock)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._begin_shutdown)
        log.info("Worker %s started (concurrency %d, handlers: %s)", self.instance_id,
                 self.concurrency, ", ".join(sorted(self.handlers)))
        liveness = store.liveness.announce(self.instance_id)
        deaths = store.liveness.death_watch(self.instance_id)
        if deaths is not None:
            deaths.noticed()   # the dead known now are handled by the pass below
        reclaimed = await recover_at_start(store, lambda: self._stopping,
                                           self.config.outcome_retry_delay)
        log.info("Recovery completed, %d jobs reclaimed", len(reclaimed))
        config = self.config
        recovery = RecoveryPass(self.queue, deaths, config.recovery_interval, self._wake.set)
        recovery.done()
        chores = Maintenance(
            self.queue, interval=self.heartbeat_interval,
            purge=RetentionPurge(self.queue, config.retention_interval), recovery=recovery,
            states=self._states,
            leases=LeaseExtension(self.queue, self.instance_id, self._running,
                                  self._stop_handler),
            lost_claims=self._lost_claims)
        heartbeat = loop.create_task(chores.run())
        periodic = loop.create_task(PeriodicScheduler(self.queue).run()) \
            if self.queue.schedules else None
        if self._supervised:
            start_watchdog(self, grace=config.stuck_grace, period=config.watchdog_period)
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    next_due = await self._dispatch()
                except PersistenceError as e:   # the store failed and reopens: keep serving
                    log.error("dispatch failed: %s; retrying in %gs", e,
                              config.outcome_retry_delay)
                    next_due = time.time() + config.outcome_retry_delay
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
        """Whether the doorbell rang since the last refresh. Reads the socket
        itself too: a ring may not have reached the loop's callback yet."""
        try:
            while self._doorbell.recv(64):
                self._new_work = True
        except (BlockingIOError, InterruptedError):
            pass
        return self._new_work

    async def _refresh(self) -> None:
        self._new_work = False
        await self.dispatcher.refresh()

    def _begin_shutdown(self) -> None:
        if not self._stopping:
            self._stopping = True
            # Nothing claimed from here on starts: a claim still in flight hands
            # its jobs back (_started), so this line is true at once.
            log.info("Graceful shutdown initiated")
        if self._wake is not None:
            self._wake.set()

    def _on_unstoppable(self) -> None:
        """A sync handler's timeout passed and its thread cannot be stopped."""
        if self._supervised:
            # drain, then let the supervisor replace this process
            self._exit_code = EXIT_REPLACE
            self._begin_shutdown()

    async def _claiming(self, write):
        """Await `write`, a store write that claims jobs, counted as in flight.
        A PersistenceError leaves its outcome unknown: it may have committed,
        and its jobs are then looked for (gq.runtime.maintenance.LostClaims)."""
        self._claims += 1
        self._claims_begun += 1
        self._claims_settled.clear()
        try:
            return await write
        except PersistenceError:
            self._lost_claims.suspect()
            raise
        finally:
            self._claims -= 1
            if not self._claims:
                self._claims_settled.set()

    def _idle_timeout(self, next_due: float | None) -> float:
        timeout = self.config.poll_interval
        if next_due is not None:
            timeout = min(timeout, max(0.0, next_due - time.time()))
        return timeout

    # -- dispatch -------------------------------------------------------------------
    async def _dispatch(self) -> float | None:
        """Promote due delayed jobs, learn new ready ones, fill free slots.
        Returns when the next delayed job falls due (None: none waiting)."""
        store = self.queue.store
        next_due = await store_read(store, store.next_due)
        if next_due is not None and next_due <= time.time():
            await store.apromote_due(now=time.time())
            next_due = await store_read(store, store.next_due)
        await self._fill_slots(store)
        return next_due

    async def _fill_slots(self, store) -> None:
        await self._refresh()
        if self._states.due():
            await self._states.check()
        self._recorder.flush(len(self._running))
        # Outcomes not yet handed to a commit ride along with this claim: one
        # commit records them and refills the slots they free.
        carried = self.outcomes.carried()
        free = self.concurrency - len(self._running) + len(carried)
        if free <= 0:
            return
        candidates = self.dispatcher.pick(free, self._running_by_type)
        if not candidates:
            return
        if carried:
            stale = await self.outcomes.commit(self.outcomes.take(), candidates)
        else:
            visibility = self.queue.config.visibility_timeout
            try:
                claimed = await self._claiming(store.aclaim(
                    self.dispatcher.claim_args(candidates), owner=self.instance_id,
                    lease_deadline=time.monotonic() + visibility, now=time.time()))
            except GQError as e:      # the store failed: keep serving, try again later
                log.error("claim failed: %s", e)
                self.dispatcher.unpick(candidates)
                return
            stale = await self._started(candidates, claimed)
        if stale:
            self._wake.set()   # some were stale: look again at once

    async def _started(self, candidates, claimed) -> bool:
        """Start what a claim of `candidates` returned; True if some were stale
        (the dispatcher takes back what it should, see its `settle`). A claim
        answered after the stop began hands its jobs back instead."""
        if self._stopping and claimed:
            self._handing_back.append(self._loop.create_task(self._hand_back(claimed)))
            claimed = []
        for record in claimed:
            self._start(record)
        self._recorder.flush(len(self._running))
        return await self.dispatcher.settle(candidates, claimed)

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

    # -- the jobs held --------------------------------------------------------------
    def _start(self, record) -> None:
        self._recorder.started(record)
        running = Running(record)
        self._running[record.id] = running
        self._running_by_type[record.type] = self._running_by_type.get(record.type, 0) + 1
        running.task = self._loop.create_task(self._run(running))

    def _forget(self, running: Running) -> None:
        record = running.record
        self._running.pop(record.id, None)
        n = self._running_by_type.get(record.type, 1) - 1
        self._running_by_type[record.type] = n
        self.dispatcher.released(record.type, n)
        if self._wake is not None:
            self._wake.set()

    async def _run(self, running: Running) -> None:
        try:
            outcome = await self.runner.run(running)
        except BaseException:
            self._forget(running)
            raise
        running.finishing = True
        if outcome is None:
            self._forget(running)   # cancelled, lease lost, or shutdown: nothing to record
            return
        # The slot stays held until the outcome is durable (see OutcomeWriter).
        self.outcomes.add(running, outcome)

    def _stop_handler(self, job_id: str, reason: str) -> None:
        running = self._running.get(job_id)
        if running is not None:
            running.stop(reason)

    # -- what the watchdog asks (from its own thread) -------------------------------
    def stuck(self, grace: float) -> list[Running]:
        """Jobs whose handler is still going `grace` seconds past its timeout."""
        now = time.monotonic()
        return [r for r in list(self._running.values())
                if not r.finishing and now > r.deadline + grace]

    def record_unstoppable(self, running: Running) -> Outcome:
        """Record the timeout of a handler that did not stop (the process is about
        to be replaced), synchronously: the event loop may be the one stuck."""
        record = running.record
        spec, timeout, max_attempts = self.runner.settings(record)
        outcome = self.runner.failure(
            record, spec, max_attempts, Category.TIMEOUT,
            f"execution timeout after {timeout:g}s; the handler did not stop, so "
            "its worker process was replaced", None)
        try:
            self.queue.store.finish(record.id, attempt=record.attempts,
                                    owner=self.instance_id, state=outcome.state,
                                    now=time.time(), error=outcome.error,
                                    run_at=outcome.run_at)
        except Exception as e:  # noqa: BLE001 - the process exits regardless
            log.error("could not record the timeout of job %s: %s", record.id, e)
        return outcome

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
                running.stop("shutdown")
            await self._wait_running(time.monotonic() + 5.0)

    async def _wait_running(self, deadline: float) -> list:
        """Wait until every held job has ended and its outcome is written (or the
        deadline passes); return the job tasks still going."""
        while self._running and time.monotonic() < deadline:
            waiting = [r.task for r in self._running.values() if r.task and not r.task.done()]
            writer = self.outcomes.task
            if writer is not None and not writer.done():
                waiting.append(writer)
            if not waiting:
                await asyncio.sleep(0.01)
                continue
            await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        return [r.task for r in self._running.values() if r.task and not r.task.done()]
