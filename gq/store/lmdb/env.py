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
    given, runs in between: the commit is seen by every process, not yet durable.

    LMDB (sync on, metasync off) writes the transaction's pages, syncs them, then
    writes the meta page that makes them current and releases its writer lock;
    the sync here puts that meta page on disk. A crash before it returns undoes
    at most this transaction, which nobody has been told of yet (LMDB keeps the
    previous meta page's tree intact for exactly that). Same two flushes as
    metasync on, but the second is outside the lock, where another process's
    commit runs beside it (submitter and worker processes share one lock)."""
    txn.commit()
    if visible is not None:
        visible()
    env.sync(True)


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
                         max_readers=MAX_READERS, sync=True, metasync=False,
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
