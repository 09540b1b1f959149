"""The store's circuit breaker: stop accepting jobs while storage keeps failing.

Fed by the store: every transaction that fails in the storage engine (an I/O
error, a failed fsync) is reported with `failed`, every committed one with
`succeeded`. After `threshold` failures in a row the circuit *opens*:
submissions are refused with `StoreUnavailable` (nothing half-accepted, the
caller knows to retry later), `gq_circuit_open` is 1 and readiness fails.
Work already accepted keeps going: workers still try to record outcomes.

After `cooldown` seconds the next caller that asks (a submission, a readiness
probe) turns the circuit *half-open* and runs one probe transaction; the
outcome of the next commit decides: success closes the circuit, failure opens
it for another cool-down. Only one probe runs at a time. A commit of a worker
(a claim, a completion) after the cool-down counts as a successful probe too.

A full disk or map is not a failure here: it has its own clear answer
(`StorageFull`), which an open circuit would only hide.

Backend-neutral: it knows nothing of LMDB, so every store can use it. The probe
itself (health, the probe before a submission) is gq.store.service's.
"""

from __future__ import annotations

import logging
import threading
import time

from gq import metrics
from gq.config import CIRCUIT_COOLDOWN_DEFAULT, CIRCUIT_THRESHOLD_DEFAULT
from gq.errors import StoreUnavailable

log = logging.getLogger("gq.store")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    """Consecutive-failure breaker of one store (thread-safe)."""

    def __init__(self, where: str, *, threshold: int = CIRCUIT_THRESHOLD_DEFAULT,
                 cooldown: float = CIRCUIT_COOLDOWN_DEFAULT, clock=time.monotonic):
        self.where = where
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self.state = CLOSED
        self.failures = 0              # consecutive, while closed
        self.last_error = ""
        self._opened_at = 0.0

    # -- reports from the store -------------------------------------------------
    def succeeded(self) -> None:
        """A transaction committed."""
        if self.state == CLOSED and not self.failures:
            return                      # the common case: no lock, nothing to do
        with self._lock:
            self.failures = 0
            # after the cool-down, any commit (a worker's too) proves the store back
            if self.state == HALF_OPEN or (
                    self.state == OPEN and self._clock() - self._opened_at >= self.cooldown):
                self.state = CLOSED
                metrics.CIRCUIT_OPEN.set(0)
                log.warning("circuit breaker closed: a transaction on %s committed; "
                            "submissions are accepted again", self.where)

    def failed(self, error: BaseException) -> None:
        """A transaction failed in the storage engine."""
        with self._lock:
            self.last_error = str(error)
            if self.state == HALF_OPEN:
                self._open(f"the probe transaction failed: {error}")
            elif self.state == CLOSED:
                self.failures += 1
                if self.failures >= self.threshold:
                    self._open(f"{self.failures} consecutive storage failures, the last: "
                               f"{error}")

    def _open(self, why: str) -> None:
        self.state = OPEN
        self._opened_at = self._clock()
        metrics.CIRCUIT_OPEN.set(1)
        log.error("circuit breaker open on %s: %s; submissions refused with "
                  "StoreUnavailable, readiness fails; a probe in %gs", self.where, why,
                  self.cooldown)

    # -- questions from callers ---------------------------------------------------
    def admit(self) -> bool:
        """Before a submission. Raises StoreUnavailable while the circuit is open
        (or another caller is probing); returns True when the cool-down is over
        and this caller must run the probe transaction first, else False."""
        if self.state == CLOSED:
            return False
        with self._lock:
            if self.state == CLOSED:
                return False
            # (a probe that never reported back, its caller gone, is retried too)
            if self._clock() - self._opened_at >= self.cooldown:
                self._opened_at = self._clock()
                self.state = HALF_OPEN
                log.warning("circuit breaker half-open on %s: probing the store", self.where)
                return True
            raise StoreUnavailable(self.reason())

    def reason(self) -> str:
        """Why the circuit is not closed, in words for an operator."""
        if self.state == HALF_OPEN:
            return (f"the store at {self.where} is being probed after storage failures "
                    f"(last: {self.last_error}); retry shortly")
        left = max(0.0, self.cooldown - (self._clock() - self._opened_at))
        return (f"the store at {self.where} is unavailable (circuit open after storage "
                f"failures; last: {self.last_error}); submissions are refused, next probe "
                f"in {left:.1f}s")
