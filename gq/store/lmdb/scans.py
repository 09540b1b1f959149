"""Reading a run of index keys under one prefix inside a transaction.

Every index of the LMDB store lives in one table under its own key prefix
(gq/store/keys.py); these are the two ways ops read a run of it.
"""

from __future__ import annotations


def keys_under(txn, db, prefix: bytes) -> list[bytes]:
    """Every key that starts with `prefix`, in order."""
    out = []
    with txn.cursor(db=db) as cur:
        if cur.set_range(prefix):
            for key in cur.iternext(values=False):
                key = bytes(key)
                if not key.startswith(prefix):
                    break
                out.append(key)
    return out


def due_under(txn, db, prefix: bytes, time_of, now: float, limit: int) -> list[tuple[bytes, str]]:
    """(key, value as text) of up to `limit` entries under `prefix` whose time
    (`time_of(key)`, keys ordered by it) is <= now."""
    due = []
    with txn.cursor(db=db) as cur:
        if cur.set_range(prefix):
            for key, value in cur:
                key = bytes(key)
                if len(due) >= limit or not key.startswith(prefix):
                    break
                if time_of(key) > now:
                    break
                due.append((key, bytes(value).decode()))
    return due
