"""The LMDB store's write ops: one function per operation, run by the group-commit
writer inside a `Batch` (its last argument). gq.store.service calls them; each
applies the backend-neutral decisions of gq.store.rules through `Batch.move`,
the one place an LMDB record changes state (the compiled gate checks every
move). An op does all of its checks before its first write (gq.store.writer)."""

from __future__ import annotations

import logging

from gq._core import states as S
from gq.errors import JobNotFound, LeaseLost, RecordCorrupted
from gq.store import rules
from gq.store.lmdb import keys as K
from gq.store.lmdb.batch import Batch, read_counts, running_records
from gq.store.lmdb.expiry import expire
from gq.store.lmdb.occurrences import submit_occurrence
from gq.store.lmdb.scans import due_under, keys_under
from gq.store.lmdb.submit import SubmitOp
from gq.store.lmdb.transfer import insert_records

# The ops written in their own modules are members of this set too.
__all__ = ["SETTLE_AFTER_PURGE", "SubmitOp", "cancel", "claim", "expire", "extend", "finish",
           "finish_many_and_claim", "hand_back", "insert_records", "probe", "promote_due",
           "purge", "reclaim_expired", "reclaim_other_boot", "reclaim_owner", "retry",
           "set_paused", "submit_occurrence"]

log = logging.getLogger("gq.store")

# A purge that freed pages is followed by one more tiny commit: LMDB reuses the
# pages a transaction frees only after the next commit (the previous snapshot
# must survive a torn meta write), and on a full disk the next write would
# otherwise find no page to reuse and no room to grow.
SETTLE_AFTER_PURGE = True


def probe(b: Batch) -> None:
    """One small synced write: the circuit breaker's probe, and the commit after
    a purge that lets LMDB reuse the pages the purge freed."""
    b.wrote = True
    b.txn.put(K.META_PROBE, K.pack_u64(int(b.store.reopens)), db=b.db["meta"])


# -- an operator's changes ---------------------------------------------------------

def cancel(job_id, now, b: Batch):
    rec = b.load_existing(job_id)
    rules.check_cancel(rec)
    if rec.state == S.RUNNING:
        b.ring = True   # its worker must stop the handler
    return b.move(rec, S.CANCELLED, now, finished_at=now)


def retry(job_id, now, b: Batch):
    rec = b.load_existing(job_id)
    rules.check_retry(rec, now)
    return b.move(rec, S.SCHEDULED, now, attempts=0, crashes=0, run_at=0.0, finished_at=0.0)


def set_paused(job_type, paused, b: Batch) -> None:
    b.wrote = True
    b.ring = True    # workers re-read the paused types at once
    key = K.PAUSED + job_type.encode()
    if paused:
        b.txn.put(key, b"1", db=b.db["meta"])
    else:
        b.txn.delete(key, db=b.db["meta"])
    b.forget_paused()


# -- the worker's ops ----------------------------------------------------------------

def claim(candidates, owner, lease_deadline, now, b: Batch):
    claimed = []
    paused = b.paused_types()
    for job_id, ready_seq in candidates:
        try:
            rec = b.load(job_id)
        except RecordCorrupted as e:
            # Unreadable: it can never run. Take it out of the ready queue so no
            # worker trips on it again, and say so; `gq check` lists it.
            log.error("%s; job taken out of the ready queue", e,
                      extra={"job_id": job_id, "category": "system"})
            b.wrote = True
            b.txn.delete(K.ready_key(ready_seq), b"", b.db["ready"])
            continue
        if rec is None or rec.state != S.SCHEDULED or rec.ready_seq != ready_seq:
            continue   # stale: someone else moved it since the dispatcher saw it
        if rec.type in paused:
            continue   # paused since the dispatcher looked: the pause wins
        claimed.append(b.move(rec, S.RUNNING, now, attempts=rec.attempts + 1,
                              lease_owner=owner, lease_deadline=lease_deadline,
                              started_at=now))
    return claimed


def hand_back(jobs, owner, now, b: Batch):
    handed = []
    for job_id, attempt in jobs:
        rec = b.load(job_id)
        if rec is None or rec.state != S.RUNNING or rec.attempts != attempt or \
                rec.lease_owner != owner:
            continue
        b.move(rec, S.SCHEDULED, now, attempts=attempt - 1, lease_owner="",
               lease_deadline=0.0, run_at=0.0)
        handed.append(job_id)
    return handed


def finish(job_id, attempt, owner, state, now, result, error, run_at, max_attempts,
           b: Batch):
    rec = b.load_existing(job_id)
    if rec.state != S.RUNNING or rec.attempts != attempt or rec.lease_owner != owner:
        raise LeaseLost(job_id, attempt, S.STATE_NAMES[rec.state], rec.attempts)
    changes = {"lease_owner": "", "lease_deadline": 0.0}
    if state == S.COMPLETED:
        changes.update(result=result, error=b"", finished_at=now)
    elif state == S.SCHEDULED:
        changes.update(error=error, run_at=run_at)
    else:
        changes.update(error=error, finished_at=now)
    if max_attempts:                 # a snooze: one more attempt allowed
        changes["max_attempts"] = max_attempts
    b.move(rec, state, now, **changes)
    if state == S.COMPLETED:
        release_dependents(b, job_id, now)
    return rec


def reclaim_owner(owner, now, crashed, quarantine_after, b: Batch):
    reclaimed = []
    for rec in list(running_records(b)):
        if rec.lease_owner != owner:
            continue
        crashes, error = rules.crash_verdict(rec.crashes, rec.attempts, crashed,
                                             quarantine_after)
        if error is not None:
            b.move(rec, S.DEAD_LETTER, now, lease_owner="", lease_deadline=0.0,
                   crashes=crashes, error=error, finished_at=now)
        else:
            b.move(rec, S.SCHEDULED, now, lease_owner="", lease_deadline=0.0, run_at=0.0,
                   crashes=crashes)
        reclaimed.append(rec.id)
    return reclaimed


def purge(cutoff, limit, b: Batch) -> int:
    # The listing is in submission order, not finish order: the age test runs
    # during the scan, so `limit` counts jobs old enough to go, and younger ones
    # listed first cannot use it up (a caller repeats while it gets `limit`).
    doomed = []
    types = sorted({t for (st, t) in read_counts(b.txn, b.db) if st in rules.PURGEABLE})
    with b.txn.cursor(db=b.db["listing"]) as cur:
        for job_type in types:
            for state in rules.PURGEABLE:
                prefix = K.listing_prefix(job_type, state)
                if len(doomed) >= limit or not cur.set_range(prefix):
                    continue
                for key, value in cur:
                    if len(doomed) >= limit or not bytes(key).startswith(prefix):
                        break
                    rec = b.load(bytes(value).decode())
                    if rec is not None and rec.state in rules.PURGEABLE \
                            and rec.finished_at <= cutoff:
                        doomed.append((bytes(key), rec))
    for listing_key, rec in doomed:
        job_id = rec.id
        b.wrote = True
        b.txn.delete(listing_key, db=b.db["listing"])
        b.txn.delete(job_id.encode(), db=b.db["jobs"])
        for dep in rec.depends_on:
            b.txn.delete(K.dependent_key(dep, job_id), db=b.db["dependents"])
        if rec.key:
            owner = b.txn.get(K.idempotency_key(rec.key), db=b.db["keys"])
            if owner is not None and bytes(owner).decode() == job_id:
                b.txn.delete(K.idempotency_key(rec.key), db=b.db["keys"])
        b.add_count(rec.state, rec.type, -1)
    return len(doomed)


def finish_many_and_claim(finishes, owner, now, candidates, lease_deadline, b: Batch):
    refused = {}
    for job_id, attempt, state, result, error, run_at, *snooze in finishes:   # Finish
        try:
            finish(job_id, attempt, owner, state, now, result, error, run_at,
                   snooze[0] if snooze else 0, b)
        except (LeaseLost, JobNotFound, RecordCorrupted) as e:   # before that finish wrote
            refused[job_id] = e
    claimed = claim(candidates, owner, lease_deadline, now, b) if candidates else []
    return refused, claimed


def release_dependents(b: Batch, job_id: str, now: float) -> None:
    """The transaction that completes a job moves each dependent whose
    dependencies are now all completed from pending to scheduled."""
    if not b.dependents_exist():
        return
    prefix = K.dependents_prefix(job_id)
    for key in keys_under(b.txn, b.db["dependents"], prefix):
        b.txn.delete(key, db=b.db["dependents"])
        dependent = b.load(key[len(prefix):].decode())
        if dependent is None or dependent.state != S.PENDING:
            continue
        if all(is_completed(b, dep) for dep in dependent.depends_on):
            b.move(dependent, S.SCHEDULED, now)


def is_completed(b: Batch, job_id: str) -> bool:
    rec = b.load(job_id)
    return rec is not None and rec.state == S.COMPLETED


def extend(leases, owner, lease_deadline, b: Batch):
    lost = []
    for job_id, attempt in leases:
        rec = b.load(job_id)
        if rec is None or rec.state != S.RUNNING or rec.attempts != attempt \
                or rec.lease_owner != owner:
            lost.append(job_id)
            continue
        rec.lease_deadline = lease_deadline
        b.put_record(rec)
    return lost


def promote_due(now, limit, b: Batch) -> int:
    due = due_under(b.txn, b.db["delayed"], K.DELAYED, lambda key: K.parse_delayed_key(key)[0],
                    now, limit)
    for _, job_id in due:
        rec = b.load(job_id)
        if rec is None or rec.state != S.SCHEDULED or rec.ready_seq:
            continue
        b.remove_indexes(rec)
        rec.ready_seq = b.take_seq()
        rec.updated_at = now
        b.add_indexes(rec)
        b.put_record(rec)
    return len(due)


# -- recovery ------------------------------------------------------------------------

def reclaim_expired(job_id, owner, now, now_mono, b: Batch) -> bool:
    rec = b.load(job_id)
    if rec is None or rec.state != S.RUNNING or rec.lease_owner != owner \
            or not (0 < rec.lease_deadline < now_mono):
        return False
    b.move(rec, S.SCHEDULED, now, lease_owner="", lease_deadline=0.0, run_at=0.0)
    return True


def reclaim_other_boot(boot_id, now, b: Batch) -> list[tuple[str, str]]:
    stored = b.txn.get(K.META_BOOT, db=b.db["meta"])
    if stored is not None and bytes(stored).decode() == boot_id:
        return []
    b.wrote = True
    b.txn.put(K.META_BOOT, boot_id.encode(), db=b.db["meta"])
    if stored is None:
        return []     # first boot recorded: dead owners are found by flock
    reclaimed = []
    for rec in list(running_records(b)):
        owner = rec.lease_owner
        b.move(rec, S.SCHEDULED, now, lease_owner="", lease_deadline=0.0, run_at=0.0)
        reclaimed.append((rec.id, owner))
    return reclaimed
