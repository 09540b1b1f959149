"""Lifetime: a job's total time from submission, after which it is dead-lettered.

A job submitted with a lifetime gets one `expiry` index entry keyed by its
deadline (created_at + lifetime, wall clock: it must survive restarts, which
the monotonic clock does not). The sweep reads only the expired head of that
index, so a store full of long-lived jobs costs nothing until they expire.

What expires: any job still pending, scheduled or running at its deadline goes
to dead_letter (category timeout). A running job is not allowed to finish: its
worker sees the job is no longer its own, stops the handler, and its late
completion is refused by fencing — the lifetime is a hard bound. A job already
finished (or dead-lettered for another reason) just loses its entry; an
operator `retry` of an expired job therefore runs it without a lifetime.
"""

from __future__ import annotations

from gq._core import states as S
from gq.store import rules
from gq.store.lmdb import keys as K
from gq.store.lmdb.scans import due_under

EXPIRABLE = (S.PENDING, S.SCHEDULED, S.RUNNING)


def next_expiry(txn, db) -> float | None:
    """The earliest lifetime deadline in the store, or None."""
    with txn.cursor(db=db["index"]) as cur:
        if cur.set_range(K.EXPIRY) and bytes(cur.key()).startswith(K.EXPIRY):
            return K.parse_expiry_key(cur.key())[0]
    return None


def expire(now: float, limit: int, b) -> list[tuple[str, str, int]]:
    """Dead-letter up to `limit` jobs whose deadline is <= now; drop the entries
    of jobs already finished. Returns (id, type, state it was in) of each job
    dead-lettered."""
    due = due_under(b.txn, b.db["index"], K.EXPIRY, lambda key: K.parse_expiry_key(key)[0],
                    now, limit)
    expired = []
    for key, job_id in due:
        b.wrote = True
        b.txn.delete(key, db=b.db["index"])
        rec = b.load(job_id)
        if rec is None or rec.state not in EXPIRABLE:
            continue
        was = rec.state
        if was == S.RUNNING:
            b.ring = True   # its worker must stop the handler now
        b.move(rec, S.DEAD_LETTER, now, lease_owner="", lease_deadline=0.0,
               finished_at=now,
               error=rules.lifetime_error(rec.lifetime, was, rec.created_at, rec.attempts,
                                          now))
        expired.append((job_id, rec.type, was))
    return expired
