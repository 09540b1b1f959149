"""Worker liveness on an LMDB data dir: lock files, held for as long as a worker lives.

Each worker instance holds an exclusive flock on `<data dir>/instances/<instance
id>.lock`. The kernel drops the lock when the process dies, however it dies
(SIGKILL, OOM, power loss and reboot included), so a lock that can be taken
proves its owner dead, and recovery (gq.runtime.recovery) reclaims that owner's
running jobs at once instead of after the visibility timeout. A live but frozen
owner (SIGSTOP, a stalled VM) keeps its lock; its jobs wait for their lease.
"""

from __future__ import annotations

import fcntl
import os
import re

INSTANCES_DIR = "instances"
CLEAN_EXIT = b"clean exit\n"
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


class LockFiles:
    """The liveness registry of an LMDB data dir (`LMDBStore.liveness`): the lock
    files above."""

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

    def announce(self, instance_id: str) -> Liveness:
        """Announce `instance_id` alive until `.release()`."""
        return Liveness(self.data_dir, instance_id)

    def death_watch(self, own_id: str) -> "DeathWatch":
        """A cheap check, once per heartbeat, for instances that died since."""
        return DeathWatch(self.data_dir, own_id)
