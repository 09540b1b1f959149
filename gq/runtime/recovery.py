"""Recovery: give the jobs of dead or frozen workers back to the queue.

Liveness is announced, not guessed: each worker instance holds an exclusive
flock on `<data dir>/instances/<instance id>.lock` for as long as it lives. The
kernel drops the lock when the process dies, however it dies (SIGKILL, OOM,
power loss and reboot included), so a lock that can be taken proves its owner
dead, and that owner's running jobs are reclaimed at once instead of after the
visibility timeout. A live but frozen owner (SIGSTOP, a stalled VM) keeps its
lock; its jobs are reclaimed when their lease (a CLOCK_MONOTONIC deadline, the
same clock for every process of the machine) runs out, and its late completion
is then refused by fencing.

A reboot ends every instance at once and restarts the monotonic clock, so
lease deadlines written before it mean nothing after it: the store remembers
the boot id (/proc/sys/kernel/random/boot_id) its last worker started under,
and the first worker to start under a new one reclaims every running job.

Every job found orphaned counts in gq_stuck_jobs_detected; every one put back
(or quarantined) in gq_recovery_jobs_reclaimed, and is logged with the worker
that held it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time

from gq.metrics import RECOVERY_JOBS_RECLAIMED, STUCK_JOBS_DETECTED

log = logging.getLogger("gq.recovery")

INSTANCES_DIR = "instances"
CLEAN_EXIT = b"clean exit\n"
RECOVERY_INTERVAL = 5.0   # full passes (dead owners, expired leases); deaths are
                          # noticed between them by DeathWatch, every heartbeat
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _lock_path(data_dir: str, instance_id: str) -> str:
    return os.path.join(data_dir, INSTANCES_DIR, _SAFE.sub("_", instance_id) + ".lock")


class Liveness:
    """This process's announcement that `instance_id` is alive."""

    def __init__(self, data_dir: str, instance_id: str):
        os.makedirs(os.path.join(data_dir, INSTANCES_DIR), exist_ok=True)
        self.path = _lock_path(data_dir, instance_id)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self, leftover: bool = False) -> None:
        """Exit after a graceful drain. With `leftover` jobs still leased (the
        shutdown timeout cut them off) the file stays, marked clean, so recovery
        reschedules them without counting a crash; otherwise it goes."""
        if self._fd is None:
            return
        if leftover:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, CLEAN_EXIT, 0)
        else:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self._fd)
        self._fd = None


class DeathWatch:
    """Notices an instance dying between full recovery passes, cheaply: it only
    tries the lock files (no store read), once per worker heartbeat, so a dead
    instance's jobs are reclaimed within about a second instead of at the next
    pass. Lock files found dead before (an instance killed while idle leaves
    one) do not fire again."""

    def __init__(self, data_dir: str, own_id: str):
        self.dir = os.path.join(data_dir, INSTANCES_DIR)
        self.own = os.path.basename(_lock_path(data_dir, own_id))
        self.known_dead: set[str] = set()

    def noticed(self) -> bool:
        """True if some instance died since the last look."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return False
        dead = set()
        for name in names:
            if name != self.own and name.endswith(".lock") and \
                    not _held(os.path.join(self.dir, name)):
                dead.add(name)
        fresh = dead - self.known_dead
        self.known_dead = dead
        return bool(fresh)


def _held(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)   # closing drops the lock if we took it
    return False


def exited_cleanly(data_dir: str, instance_id: str) -> bool:
    """True if a dead instance left its lock file marked as a graceful exit."""
    try:
        with open(_lock_path(data_dir, instance_id), "rb") as f:
            return f.read(len(CLEAN_EXIT)) == CLEAN_EXIT
    except OSError:
        return False


def is_alive(data_dir: str, instance_id: str) -> bool:
    """True while the instance's process holds its lock."""
    return _held(_lock_path(data_dir, instance_id))


def current_boot_id() -> str:
    """This machine's boot id ("" where the kernel does not say)."""
    try:
        with open(BOOT_ID_PATH) as f:
            return f.read().strip()
    except OSError:
        return ""


def reclaim_after_reboot(store, boot_id: str | None = None, *,
                         now_wall: float | None = None) -> list[str]:
    """At a worker's start: if the store last saw another boot, every running job
    is from before the reboot and goes back to scheduled (not counted as a crash
    of the job: the machine went down, not its worker). Returns their ids."""
    if getattr(store, "reclaim_other_boot", None) is None:
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


def reclaim_dead_owner(store, data_dir: str, owner: str, *, crashed: bool,
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


class _LockFiles:
    """The liveness registry of an LMDB data dir: the lock files above."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir

    def is_alive(self, instance_id: str) -> bool:
        return is_alive(self.data_dir, instance_id)

    def exited_cleanly(self, instance_id: str) -> bool:
        return exited_cleanly(self.data_dir, instance_id)

    def forget(self, instance_id: str) -> None:
        try:
            os.unlink(_lock_path(self.data_dir, instance_id))
        except FileNotFoundError:
            pass


def _instances(store, data_dir: str):
    """Where liveness is announced: a store shared across machines keeps its own
    registry (PostgreSQL: heartbeat rows); otherwise lock files in the data dir."""
    return getattr(store, "instances", None) or _LockFiles(data_dir)


def announce(store, data_dir: str, instance_id: str):
    """Announce `instance_id` alive until `.release()` (see Liveness)."""
    registry = getattr(store, "instances", None)
    if registry is not None:
        return registry.announce(instance_id)
    return Liveness(data_dir, instance_id)


def recover(store, data_dir: str, *, now_wall: float | None = None,
            now_mono: float | None = None) -> list[str]:
    """Reclaim the running jobs of dead instances, and those whose lease ran out.
    Returns the reclaimed ids (each logged with its original worker)."""
    instances = _instances(store, data_dir)
    now_wall = time.time() if now_wall is None else now_wall
    now_mono = time.monotonic() if now_mono is None else now_mono
    reader_check = getattr(store, "reader_check", None)     # LMDB: dead readers' slots
    if reader_check is not None and reader_check():
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
        reclaimed += reclaim_dead_owner(store, data_dir, owner, now_wall=now_wall,
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
