"""What a worker asks a store to claim when the store picks the jobs itself.

The LMDB store is claimed from a worker-side heap that mirrors its ready index
(`claim([(id, ready_seq), ...])`). A PostgreSQL store is shared by workers on
many machines: there the database picks (`FOR UPDATE SKIP LOCKED`, best
priority first), and the worker only says how many jobs it can take and of
which types: a `ClaimQuota`, passed where the heap's candidates would go.
"""

from __future__ import annotations


class ClaimQuota:
    """Up to `n` ready jobs, only of the types in `caps`; `caps[type]` is the most
    of that type to take (None: no per-type limit)."""

    __slots__ = ("n", "caps")

    def __init__(self, n: int, caps: dict[str, int | None]):
        self.n = n
        self.caps = caps

    def __len__(self) -> int:
        return self.n if self.caps else 0

    def __repr__(self) -> str:
        return f"ClaimQuota(n={self.n}, caps={self.caps!r})"


def worker_quota(handlers, running_by_type: dict[str, int], free: int) -> ClaimQuota:
    """The quota of a worker with `free` slots: every type it has a handler for,
    each capped by what its handler's concurrency limit still allows."""
    caps: dict[str, int | None] = {}
    for job_type, spec in handlers.items():
        limit = spec.concurrency
        if limit is None:
            caps[job_type] = None
        elif limit - running_by_type.get(job_type, 0) > 0:
            caps[job_type] = min(free, limit - running_by_type.get(job_type, 0))
    return ClaimQuota(free, caps)
