"""The watchdog of a supervised worker (a child of `processes=N`).

A thread that ends this process when a handler is stuck past its timeout with
the event loop unable to cancel it (a CPU loop in an async handler): it has the
worker record the timeout, then exits with EXIT_REPLACE. The supervisor
reclaims this process's other running jobs and starts a replacement. It talks
to the worker only through `stuck(grace)` and `record_unstoppable(running)`.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from gq.runtime.supervisor import EXIT_REPLACE

log = logging.getLogger("gq.worker")


def start_watchdog(worker, *, grace: float, period: float) -> threading.Thread:
    def watch() -> None:
        while True:
            time.sleep(period)
            stuck = worker.stuck(grace)
            if not stuck:
                continue
            for running in stuck:
                worker.record_unstoppable(running)
            log.error("%d handler(s) stuck past their timeout; replacing worker process %d",
                      len(stuck), os.getpid())
            os._exit(EXIT_REPLACE)

    thread = threading.Thread(target=watch, name="gq-watchdog", daemon=True)
    thread.start()
    return thread
