"""Pure-Python reference models the compiled core is tested against, and a
seeded random source.

The models are deliberately naive (a dict and a sort) so that they are
obviously right.
"""

from __future__ import annotations

import os
import random


def seeded_random() -> tuple[random.Random, int]:
    """A Random and its seed (GQ_TEST_SEED=<seed> replays a failure)."""
    seed = int(os.environ.get("GQ_TEST_SEED") or random.SystemRandom().randrange(2**32))
    return random.Random(seed), seed

# The lifecycle, written out by hand (docs/state_machine.md). "submit" is the
# pseudo-state a new job comes from.
REFERENCE_TRANSITIONS: dict[str, frozenset[str]] = {
    "submit": frozenset({"pending", "scheduled"}),
    "pending": frozenset({"scheduled", "cancelled", "dead_letter"}),
    "scheduled": frozenset({"running", "cancelled", "dead_letter"}),
    "running": frozenset({"completed", "scheduled", "failed", "dead_letter", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "dead_letter": frozenset({"scheduled"}),
    "cancelled": frozenset(),
}

REFERENCE_STATE_NAMES = ("pending", "scheduled", "running", "completed", "failed",
                         "dead_letter", "cancelled")


class ReferenceHeap:
    """Same API as gq._core.heap.ReadyHeap; O(n) per pop, obviously correct.

    Ties (same priority and seq) are broken by id here; ReadyHeap may break them
    differently, so tests compare against `best()` (every tied candidate).
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, int, int]] = {}   # id -> (type, priority, seq)
        self.paused: set[str] = set()

    @staticmethod
    def _order(item: tuple[str, tuple[str, int, int]]) -> tuple[int, int, str]:
        job_id, (_, priority, seq) = item
        return (-priority, seq, job_id)

    def _runnable(self) -> list[tuple[str, tuple[str, int, int]]]:
        return sorted(((i, e) for i, e in self.entries.items() if e[0] not in self.paused),
                      key=self._order)

    def best(self) -> list[tuple[str, str, int, int]]:
        """Every runnable entry tied for first place (empty if none)."""
        runnable = self._runnable()
        if not runnable:
            return []
        _, (_, priority, seq) = runnable[0]
        return [(i, t, p, s) for i, (t, p, s) in runnable if (p, s) == (priority, seq)]

    def push(self, job_id: str, job_type: str, priority: int, seq: int) -> None:
        self.entries[job_id] = (job_type, priority, seq)

    def peek(self) -> tuple[str, str, int, int] | None:
        best = self.best()
        return best[0] if best else None

    def pop(self) -> tuple[str, str, int, int] | None:
        top = self.peek()
        if top is not None:
            del self.entries[top[0]]
        return top

    def pop_many(self, n: int) -> list[tuple[str, str, int, int]]:
        out = []
        while len(out) < n:
            top = self.pop()
            if top is None:
                break
            out.append(top)
        return out

    def remove(self, job_id: str) -> bool:
        return self.entries.pop(job_id, None) is not None

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.entries

    def len_runnable(self) -> int:
        return sum(1 for t, _, _ in self.entries.values() if t not in self.paused)

    def pause(self, job_type: str) -> None:
        self.paused.add(job_type)

    def resume(self, job_type: str) -> None:
        self.paused.discard(job_type)

    def is_paused(self, job_type: str) -> bool:
        return job_type in self.paused

    def paused_types(self) -> frozenset[str]:
        return frozenset(self.paused)

    def count_type(self, job_type: str) -> int:
        return sum(1 for t, _, _ in self.entries.values() if t == job_type)

    def clear(self) -> None:
        self.entries.clear()   # pauses are configuration: they stay
