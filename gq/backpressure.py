"""Backpressure: the depth warning (the hard limit, max_depth, is in the store).

Depth is pending + scheduled, read from the store's counts (no scan). Past
`depth_warning` a process logs "Queue depth N exceeds depth_warning W" once on
crossing and again at most every DEPTH_WARNING_REPEAT seconds while it stays
above, and holds the gauge gq_queue_depth_warning at 1 (0 below). Submitters
check after each submit; workers check on their maintenance tick, so the gauge
is right in a process that only runs workers.

The hard limit `max_depth` is checked inside the submit's write transaction
(gq.store.lmdb.store, _SubmitOp), so concurrent submitters in many processes cannot
pass it together; scheduled jobs that already ran once (retries, reclaims) are
not counted there, and retries are never refused.
"""

from __future__ import annotations

import logging
import time

from gq._core import states as S
from gq.metrics import QUEUE_DEPTH_WARNING

log = logging.getLogger("gq.backpressure")

DEPTH_WARNING_REPEAT = 60.0   # seconds between repeated warnings while above


def depth_of(counts) -> int:
    """pending + scheduled jobs, from Store.counts()."""
    return sum(n for (state, _), n in counts.items() if state in (S.PENDING, S.SCHEDULED))


class DepthWatch:
    """One process's view of the warning threshold (None: no warning)."""

    def __init__(self, threshold: int | None):
        self.threshold = threshold
        self.above = False
        self._last_log = float("-inf")   # monotonic

    def after_submit(self, store) -> None:
        if self.threshold is not None:
            self.observe(depth_of(store.counts()))

    def observe(self, depth: int, now: float | None = None) -> bool:
        """Record the current depth; returns whether it is past the threshold."""
        if self.threshold is None:
            return False
        now = time.monotonic() if now is None else now
        above = depth > self.threshold
        if above and (not self.above or now - self._last_log >= DEPTH_WARNING_REPEAT):
            self._last_log = now
            log.warning("Queue depth %d exceeds depth_warning %d (pending + scheduled): "
                        "the queue grows faster than it drains; add workers or slow "
                        "submitters", depth, self.threshold,
                        extra={"depth": depth, "depth_warning": self.threshold})
        elif self.above and not above:
            log.info("Queue depth %d back under depth_warning %d", depth, self.threshold)
        self.above = above
        QUEUE_DEPTH_WARNING.set(1 if above else 0)
        return above
