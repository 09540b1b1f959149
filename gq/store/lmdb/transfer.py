"""`gq import` into an LMDB store: records moved in from another store, written
as they are (state, attempts, crashes, result...) with every index entry, in
one group-commit op. Kept apart from gq.store.lmdb.store: only `gq import` needs it."""

from __future__ import annotations

from gq._core import states as S
from gq.store import rules
from gq.store.lmdb import keys as K


def insert_records(records, now: float, b) -> None:
    """The write op: all of `records` or none (DuplicateJobId); fresh seqs in the
    given order."""
    for rec in records:   # every check before the first write
        if b.load(rec.id) is not None:
            raise rules.id_taken(rec.id)
    if b.planned:
        b.write_planned()   # ready keys are appended: theirs first
    first = b.take_seq(len(records))
    for offset, rec in enumerate(records):
        rec.seq = first + offset
        ready = rec.state == S.SCHEDULED and rec.run_at <= now
        rec.ready_seq = rec.seq if ready else 0
        rec.lease_owner, rec.lease_deadline, rec.updated_at = "", 0.0, now
        b.put_record(rec)
        b.add_indexes(rec)
        if rec.state == S.PENDING:
            for dep in rec.depends_on:
                b.txn.put(K.dependent_key(dep, rec.id), b"", db=b.db["dependents"])
            b.has_dependents = True if rec.depends_on else b.has_dependents
        if rec.key and not S.is_terminal(rec.state):
            b.txn.put(K.idempotency_key(rec.key), rec.id.encode(), db=b.db["keys"])
