"""Periodic occurrences: each one submitted once, whoever asks and however often.

A schedule's progress is one metadata entry: the time of the last occurrence
submitted. Checking it, submitting the occurrence's job and moving it on happen
in one write transaction, and LMDB runs one write transaction at a time across
every process on the data dir — so two workers (or a worker before and after a
restart) asking for the same occurrence create one job. The job also carries
the occurrence's idempotency key.
"""

from __future__ import annotations

import struct

from gq.store.lmdb import keys as K

_TIME = struct.Struct(">d")


def last_occurrence(txn, db, name: str) -> float | None:
    raw = txn.get(K.PERIODIC + name.encode(), db=db["meta"])
    return None if raw is None else _TIME.unpack(bytes(raw))[0]


def submit_occurrence(name: str, occurrence: float, submit_op, b):
    """Submit the job of `occurrence` unless it (or a later one) was submitted.

    A schedule seen for the first time only records `occurrence` as its start:
    occurrences before the schedule existed are not run. Returns the new job's
    id list (filled in before the batch commits: a plain spec is planned at the
    flush), or None."""
    key = K.PERIODIC + name.encode()
    last = last_occurrence(b.txn, b.db, name)
    if last is not None and last >= occurrence:
        return None
    ids = None if last is None else submit_op(b)
    b.wrote = True
    b.txn.put(key, _TIME.pack(occurrence), db=b.db["meta"])
    return ids
