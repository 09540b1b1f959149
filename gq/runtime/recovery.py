"""Recovery: give the jobs of dead or frozen workers back to the queue.

Liveness is announced, not guessed, through the store's `liveness` member:
lock files on an LMDB data dir (gq.store.lmdb.liveness: the kernel drops a dead
process's lock, however it died), heartbeat rows on PostgreSQL
(gq.store.postgres.instances). The running jobs of an owner known dead are
reclaimed at once instead of after the visibility timeout. A live but frozen
owner keeps its announcement; its jobs are reclaimed when their lease runs out,
and its late completion is then refused by fencing.

A reboot ends every instance at once and restarts the monotonic clock, so
lease deadlines written before it mean nothing after it: the store remembers
the boot id (/proc/sys/kernel/random/boot_id) its last worker started under,
and the first worker to start under a new one reclaims every running job.

Every job found orphaned counts in gq_stuck_jobs_detected; every one put back
(or quarantined) in gq_recovery_jobs_reclaimed, and is logged with the worker
that held it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gq.errors import PersistenceError, StoreUnavailable
from gq.metrics import RECOVERY_JOBS_RECLAIMED, STUCK_JOBS_DETECTED

log = logging.getLogger("gq.recovery")

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def current_boot_id() -> str:
    """This machine's boot id ("" where the kernel does not say)."""
    try:
        with open(BOOT_ID_PATH) as f:
            return f.read().strip()
    except OSError:
        return ""


async def recover_at_start(store, stopping, retry_delay: float) -> list[str]:
    """A worker's start-up recovery (after a reboot, then of dead owners), on a
    thread: it writes and fsyncs. A storage failure (a failed fsync: the store
    has reopened) is logged and the pass retried every `retry_delay` seconds
    rather than ending the worker; gives up ([]) only when `stopping()`."""
    while True:
        try:
            return await asyncio.to_thread(
                lambda: reclaim_after_reboot(store) + recover(store))
        except (PersistenceError, StoreUnavailable) as e:
            if stopping():
                return []
            log.error("start-up recovery failed: %s; retrying in %gs", e, retry_delay)
            await asyncio.sleep(retry_delay)


def reclaim_after_reboot(store, boot_id: str | None = None, *,
                         now_wall: float | None = None) -> list[str]:
    """At a worker's start: if the store last saw another boot, every running job
    is from before the reboot and goes back to scheduled (not counted as a crash
    of the job: the machine went down, not its worker). Returns their ids."""
    if not store.capabilities.boot_scoped:
        return []     # a store shared across machines has no one boot (PostgreSQL)
    boot_id = current_boot_id() if boot_id is None else boot_id
    if not boot_id:
        return []
    now_wall = time.time() if now_wall is None else now_wall
    pairs = store.reclaim_other_boot(boot_id, now=now_wall)
    for job_id, owner in pairs:
        log.warning("reclaimed job %s from worker %s: it was running before the machine "
                    "rebooted", job_id, owner, extra={"job_id": job_id, "worker": owner})
    _count(len(pairs))
    return [job_id for job_id, _ in pairs]


def reclaim_dead_owner(store, owner: str, *, crashed: bool,
                       now_wall: float | None = None) -> list[str]:
    """Reclaim the running jobs of `owner`, an instance known to be dead (its
    lock was free, or its supervisor saw it exit); log and count each."""
    now_wall = time.time() if now_wall is None else now_wall
    ids = store.reclaim_owner(owner, now=now_wall, crashed=crashed)
    for job_id in ids:
        log.warning("reclaimed job %s from dead worker %s", job_id, owner,
                    extra={"job_id": job_id, "worker": owner})
    _count(len(ids))
    return ids


def _count(n: int) -> None:
    if n:
        STUCK_JOBS_DETECTED.inc(n)
        RECOVERY_JOBS_RECLAIMED.inc(n)


def recover(store, *, now_wall: float | None = None,
            now_mono: float | None = None) -> list[str]:
    """Reclaim the running jobs of dead instances, and those whose lease ran out.
    Returns the reclaimed ids (each logged with its original worker)."""
    instances = store.liveness
    now_wall = time.time() if now_wall is None else now_wall
    now_mono = time.monotonic() if now_mono is None else now_mono
    if store.reader_check():     # LMDB: dead readers' slots
        log.info("freed the LMDB reader slots of dead processes")
    running = store.running_leases()          # [(job_id, owner, lease_deadline)]
    if not running:
        return []
    alive: dict[str, bool] = {}
    dead_owners, expired = set(), []
    for job_id, owner, deadline in running:
        if owner not in alive:
            alive[owner] = bool(owner) and instances.is_alive(owner)
        if not alive[owner]:
            dead_owners.add(owner)
        elif deadline and deadline < now_mono:
            expired.append((job_id, owner))
    reclaimed = []
    for owner in sorted(dead_owners):
        reclaimed += reclaim_dead_owner(store, owner, now_wall=now_wall,
                                        crashed=not instances.exited_cleanly(owner))
        instances.forget(owner)
    for job_id, owner in expired:
        if store.reclaim_expired(job_id, owner=owner, now=now_wall, now_mono=now_mono):
            log.warning("reclaimed job %s: the lease of worker %s expired (frozen or "
                        "stalled); its late completion will be refused", job_id, owner,
                        extra={"job_id": job_id, "worker": owner})
            _count(1)
            reclaimed.append(job_id)
    return reclaimed
