"""`processes=N`: N peer worker processes on one data dir, and their supervisor.

The parent forks N children and does no work itself. Each child opens its own
store (LMDB must be opened after fork, never shared), runs an ordinary Worker
with its own instance id, and claims jobs from the shared store exactly as a
worker started separately would: every claim is a transaction, so no job is
ever held by two leases.

The parent forwards SIGTERM/SIGINT (the children drain), and when a child dies
it reclaims that child's running jobs at once (their worker is provably gone)
and starts a replacement. A child exits with EXIT_REPLACE when a handler would
not stop — a sync handler stuck past its timeout, or an async one blocking the
event loop in a CPU loop — which is the only way to end such a handler.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time

log = logging.getLogger("gq.worker")

EXIT_REPLACE = 75                  # "replace me": a handler could not be stopped
RESTART_DELAY = 0.2                # before replacing a dead child...
RESTART_DELAY_MAX = 10.0           # ...doubling while children keep dying quickly
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def run_processes(worker) -> int:
    """Run `worker.processes` children until a signal; return 0 after they drain."""
    from gq.runtime.recovery import reclaim_dead_owner
    from gq.runtime.worker import Worker

    queue = worker.queue
    children: dict[int, tuple[int, str]] = {}       # pid -> (slot, instance id)
    stopping = False
    delay = RESTART_DELAY
    http = None
    if worker.http is not None:   # served here, with metrics summed over the children
        from gq.http.server import SupervisorHttp
        http = SupervisorHttp(worker, lambda: "shutting down: draining running jobs"
                              if stopping else None if children else
                              "no worker process is running")

    def spawn(slot: int) -> None:
        instance = f"{socket.gethostname()}-{os.getpid()}.{slot}-{secrets.token_hex(3)}"
        # Block the stop signals across fork: a SIGTERM landing in the child before
        # it resets its handlers would otherwise run the *parent's* handler there.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:   # the child: its own store, an ordinary worker, never returns
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                if http is not None:
                    http.after_fork_in_child()
                queue._reopen_after_fork()
                child = Worker(queue, concurrency=worker.concurrency,
                               shutdown_timeout=worker.shutdown_timeout,
                               heartbeat_interval=worker.heartbeat_interval,
                               instance_id=instance, supervised=True)
                code = child.run()
            except BaseException:  # noqa: BLE001 - report, then leave without cleanup
                log.exception("worker process %s failed", instance)
            finally:
                os._exit(code)
        children[pid] = (slot, instance)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        log.info("worker process %d started (%s)", pid, instance)

    def forward(signum, frame) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("Graceful shutdown initiated")
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(worker.processes):
            spawn(slot)
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            slot, instance = children.pop(pid, (None, None))
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if http is not None:
                http.child_exited(pid)
            # a child that exited 0 drained gracefully: its leftovers are not crashes
            reclaimed = reclaim_dead_owner(queue.store, instance, crashed=code != 0)
            if code != 0 or reclaimed:
                log.warning("worker process %d (%s) exited with %s; %d running jobs "
                            "reclaimed", pid, instance, code, len(reclaimed))
            if not stopping:
                time.sleep(delay)
                if stopping:      # a stop signal arrived during the pause
                    continue
                delay = min(RESTART_DELAY_MAX, delay * 2) if code not in (0, EXIT_REPLACE) \
                    else RESTART_DELAY
                spawn(slot)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if http is not None:
            http.stop()
    return 0


STUCK_GRACE = 2.0      # past its timeout, a handler still holding its slot is stuck
WATCHDOG_PERIOD = 0.25


def start_watchdog(worker) -> None:
    """A thread that ends this process when a handler is stuck past its timeout
    with the event loop unable to cancel it (a CPU loop in an async handler):
    it records the timeout, then exits with EXIT_REPLACE. The supervisor
    reclaims this process's other running jobs and starts a replacement."""
    import threading

    from gq.jobs import Category

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_PERIOD)
            now = time.monotonic()
            stuck = [r for r in list(worker._running.values())
                     if not r.finishing and now > r.deadline + STUCK_GRACE]
            if not stuck:
                continue
            for running in stuck:
                record = running.record
                spec, timeout, max_attempts = worker._settings(record)
                state, _, error, run_at = worker._failure(
                    record, spec, max_attempts, Category.TIMEOUT,
                    f"execution timeout after {timeout:g}s; the handler did not stop, so "
                    "its worker process was replaced", None)
                try:
                    worker.queue.store.finish(record.id, attempt=record.attempts,
                                              owner=worker.instance_id, state=state,
                                              now=time.time(), error=error, run_at=run_at)
                except Exception as e:  # noqa: BLE001 - exiting regardless
                    log.error("could not record the timeout of job %s: %s", record.id, e)
            log.error("%d handler(s) stuck past their timeout; replacing worker process %d",
                      len(stuck), os.getpid())
            os._exit(EXIT_REPLACE)

    threading.Thread(target=watch, name="gq-watchdog", daemon=True).start()
