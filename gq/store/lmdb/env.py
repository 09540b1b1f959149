"""The LMDB environment: opening it with the settings durability rests on, the
commit that returns only once a transaction survives power loss, and which
errors are the engine failing (rather than a full map or a bug in an op)."""

from __future__ import annotations

import os

import lmdb

from gq.errors import DataDirError, GQError

TABLES = ("jobs", "index")
LOGICAL_TABLES = ("ready", "delayed", "listing", "dependents", "keys", "expiry", "meta")
MAX_READERS = 1024


def durable_commit(env, txn, visible=None) -> None:
    """Commit `txn` and return once it survives power loss; `visible()`, if
    given, runs after (the doorbell: the commit is durable before anyone wakes).

    LMDB (sync on, metasync on) writes the transaction's pages, syncs them, then
    writes the meta page that makes them current through its O_DSYNC descriptor,
    and only once that write is on disk publishes the new transaction id in the
    lock file and releases its writer lock. A crash or a failed write before
    that undoes at most this transaction, which nobody has been told of yet.

    The meta page's sync must stay inside the lock. With metasync off and the
    sync done here after the commit (as gq once did, to overlap it with other
    processes' commits), LMDB publishes the transaction id before its meta page
    is durable. If that sync then fails, Linux drops the page and reports the
    error once; every process still attached keeps the lock file's transaction
    id, and once the page is read back from disk (evicted, or the file reopened)
    each of them reads the slot's previous meta page, two transactions old, and
    writes the next transaction on that stale tree: acknowledged commits vanish
    and sequence numbers repeat. The power-loss harness (tests/powerloss, failed
    fsync with a submitting and a working process) found exactly that."""
    txn.commit()
    if visible is not None:
        visible()


def open_env(path: str, map_size: int):
    if os.path.exists(path) and not os.path.isdir(path):
        raise DataDirError(f"data dir {path} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise DataDirError(f"cannot create data dir {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise DataDirError(f"data dir {path} is not writable (read-only mount or "
                           "permissions); gq needs to write its lock and data files there")
    try:
        return lmdb.open(path, map_size=map_size, max_dbs=len(TABLES) + 2,
                         max_readers=MAX_READERS, sync=True, metasync=True,
                         writemap=False, map_async=False, readahead=False, subdir=True)
    except lmdb.Error as e:
        text = str(e)
        if "Read-only" in text or "Permission denied" in text:
            raise DataDirError(f"data dir {path} is not writable: {text}") from None
        if "Invalid argument" in text or "MDB_INVALID" in text or "MDB_VERSION" in text:
            raise DataDirError(f"data dir {path} does not hold a gq store this build can "
                               f"read: {text}") from None
        raise DataDirError(f"cannot open data dir {path}: {text}") from None


def is_engine_failure(e: BaseException) -> bool:
    """An I/O-level failure of the storage engine (a failed write or fsync, a
    panicked environment), as opposed to a full map or a bug in an op."""
    return isinstance(e, (lmdb.Error, OSError)) and not isinstance(
        e, (lmdb.MapFullError, lmdb.BadValsizeError, GQError))
