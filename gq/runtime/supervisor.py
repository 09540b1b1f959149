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
event loop in a CPU loop — which is the only way to end such a handler (see
gq.runtime.watchdog).

The supervisor does not know the Worker class: it is handed the worker whose
settings it runs and a factory that makes each child's worker.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
from typing import Callable

from gq.runtime.recovery import reclaim_dead_owner

log = logging.getLogger("gq.worker")

EXIT_REPLACE = 75                  # "replace me": a handler could not be stopped
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def run_processes(worker, make_child: Callable[[str], object]) -> int:
    """Run `worker.processes` children until a signal; return 0 after they drain.
    `make_child(instance_id)` makes a child's worker (called in the child, after
    the fork and the store's reopening); its `run()` serves."""
    queue = worker.queue
    config = worker.config
    children: dict[int, tuple[int, str]] = {}       # pid -> (slot, instance id)
    stopping = False
    delay = config.restart_delay
    http = None
    if worker.http is not None:   # served here, with metrics summed over the children
        # imported here: the HTTP server (aiohttp) is loaded only when it is asked for
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
                code = make_child(instance).run()
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
                delay = min(config.restart_delay_max, delay * 2) \
                    if code not in (0, EXIT_REPLACE) else config.restart_delay
                spawn(slot)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if http is not None:
            http.stop()
    return 0
