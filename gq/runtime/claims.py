"""What a worker asks a store to claim when the store picks the jobs itself.

The LMDB store is claimed from a worker-side heap that mirrors its ready index
(`claim([(id, ready_seq), ...])`). A PostgreSQL store is shared by workers on
many machines: there the database picks (`FOR UPDATE SKIP LOCKED`, best
priority first), and the worker only says how many jobs it can take and of
which types: a `ClaimQuota`, passed where the heap's candidates would go.
"""

from __future__ import annotations

from gq.store.api import ClaimQuota


class QuotaBook:
    """A worker's promises to claims still in flight. A worker can have two
    claims under way at once (its dispatcher's, and the one that rides along
    with a batch of outcomes); each quota is cut from what the other has not
    already been promised, so together they never pass the worker's concurrency
    nor a handler's limit. `settle` once the claim returned (and its jobs count
    as running)."""

    def __init__(self):
        self.total = 0
        self.by_type: dict[str, int] = {}

    def take(self, handlers, running_by_type: dict[str, int], free: int) -> ClaimQuota:
        free = max(0, free - self.total)
        caps: dict[str, int | None] = {}
        for job_type, spec in handlers.items():
            limit = spec.concurrency
            if limit is None:
                caps[job_type] = None
                continue
            left = limit - running_by_type.get(job_type, 0) - self.by_type.get(job_type, 0)
            if left > 0:
                caps[job_type] = min(free, left)
        quota = ClaimQuota(free, caps)
        self.total += quota.n
        for job_type, cap in caps.items():
            if cap is not None:
                self.by_type[job_type] = self.by_type.get(job_type, 0) + cap
        return quota

    def settle(self, quota) -> None:
        if not isinstance(quota, ClaimQuota):
            return
        self.total -= quota.n
        for job_type, cap in quota.caps.items():
            if cap is not None:
                self.by_type[job_type] -= cap
