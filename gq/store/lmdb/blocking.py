"""Blocked dependencies: pending jobs whose dependency chain cannot complete.

When a job ends `failed`, `dead_letter` or `cancelled`, nothing waiting on it
(directly or further down the chain) can run. Those jobs stay `pending` — an
operator may still retry a dead-lettered dependency, and once it completes they
run — but they are marked *blocked*: one `blocked` index entry per (job, root
cause), holding the chain from the root to the job, and one log line
"Dependency not satisfiable" each. The lifetime sweep (gq.store.lmdb.expiry) ends
them if the chain is never repaired.

Every function here runs inside a store write transaction (a `Batch`), called
by `Batch.move` for the moves that matter, and by submit for new jobs that
depend on an already failed or blocked job.
"""

from __future__ import annotations

import logging

import orjson

from gq._core import states as S
from gq.store import rules
from gq.store.lmdb import keys as K
from gq.store.lmdb.scans import keys_under

log = logging.getLogger("gq.dependencies")


def after_move(b, rec, old_state: int) -> None:
    """Keep the blocked marks right after `rec` moved from `old_state`."""
    if old_state == S.PENDING and rec.state != S.SCHEDULED:
        _clear_own(b, rec.id)            # it is no longer a waiting job
    if rec.state in rules.UNSATISFIABLE:
        _block_descendants(b, rec)
    elif old_state == S.DEAD_LETTER:     # operator retry: the chain may complete again
        _unblock_descendants(b, rec.id)


def block_new(b, job_id: str, depends_on) -> None:
    """A job just submitted `pending`: mark it blocked if a dependency already
    ended without completing, or is itself blocked."""
    for dep in depends_on:
        dep_rec = b.load(dep)
        if dep_rec is None:
            continue
        if dep_rec.state in rules.UNSATISFIABLE:
            _mark(b, job_id, dep, [dep, job_id], S.STATE_NAMES[dep_rec.state])
        elif dep_rec.state == S.PENDING:
            for root, chain in chains_of(b.txn, b.db, dep):
                _mark(b, job_id, root, chain + [job_id], None)


def chains_of(txn, db, job_id: str) -> list[tuple[str, list[str]]]:
    """(root, chain) of every blocked entry of `job_id` (none: not blocked)."""
    prefix = K.blocked_prefix(job_id)
    out = []
    with txn.cursor(db=db["index"]) as cur:
        if cur.set_range(prefix):
            for key, value in cur:
                key = bytes(key)
                if not key.startswith(prefix):
                    break
                out.append((key[len(prefix):].decode(), orjson.loads(bytes(value))))
    return out


def blocked_count(txn, db) -> int:
    raw = txn.get(K.META_BLOCKED, db=db["meta"])
    return K.unpack_u64(raw) if raw else 0


# -- inside the transaction ----------------------------------------------------

def _dependents(b, job_id: str) -> list[str]:
    prefix = K.dependents_prefix(job_id)
    return [key[len(prefix):].decode() for key in keys_under(b.txn, b.db["index"], prefix)]


def _block_descendants(b, root) -> None:
    """Walk the dependents of `root` (breadth first, through pending jobs only:
    a job that already ended blocked its own dependents when it ended)."""
    root_state = S.STATE_NAMES[root.state]
    frontier = [(root.id, [root.id])]
    seen = {root.id}
    while frontier:
        job_id, chain = frontier.pop(0)
        for dependent in _dependents(b, job_id):
            if dependent in seen:
                continue
            seen.add(dependent)
            rec = b.load(dependent)
            if rec is None or rec.state != S.PENDING:
                continue
            path = chain + [dependent]
            _mark(b, dependent, root.id, path, root_state)
            frontier.append((dependent, path))


def _unblock_descendants(b, root_id: str) -> None:
    frontier, seen = [root_id], {root_id}
    while frontier:
        job_id = frontier.pop(0)
        for dependent in _dependents(b, job_id):
            if dependent in seen:
                continue
            seen.add(dependent)
            key = K.blocked_key(dependent, root_id)
            if b.txn.get(key, db=b.db["index"]) is not None:
                b.wrote = True
                b.txn.delete(key, db=b.db["index"])
                if not _is_blocked(b, dependent):
                    _add_blocked(b, -1)
            frontier.append(dependent)


def _mark(b, job_id: str, root: str, chain: list[str], root_state: str | None) -> None:
    key = K.blocked_key(job_id, root)
    if b.txn.get(key, db=b.db["index"]) is not None:
        return
    newly_blocked = not _is_blocked(b, job_id)
    b.wrote = True
    b.txn.put(key, orjson.dumps(chain), db=b.db["index"])
    if newly_blocked:
        _add_blocked(b, 1)
    text = " -> ".join(chain)
    why = f"ended {root_state}" if root_state else "cannot complete"
    b.after_commit.append(lambda: log.warning(
        "Dependency not satisfiable: job %s waits on %s, which %s (chain %s); it stays "
        "pending until %s is retried and completes, or its lifetime ends",
        job_id, root, why, text, root,
        extra={"job_id": job_id, "root": root, "chain": chain}))


def _clear_own(b, job_id: str) -> None:
    keys = keys_under(b.txn, b.db["index"], K.blocked_prefix(job_id))
    if keys:
        b.wrote = True
        for key in keys:
            b.txn.delete(key, db=b.db["index"])
        _add_blocked(b, -1)


def _is_blocked(b, job_id: str) -> bool:
    prefix = K.blocked_prefix(job_id)
    with b.txn.cursor(db=b.db["index"]) as cur:
        return bool(cur.set_range(prefix)) and bytes(cur.key()).startswith(prefix)


def _add_blocked(b, delta: int) -> None:
    n = max(0, blocked_count(b.txn, b.db) + delta)
    b.wrote = True
    b.txn.put(K.META_BLOCKED, K.pack_u64(n), db=b.db["meta"])
