"""Mounting lazyfs over a backing directory, and the power cut that unmounts it.

The daemon is a forked child of the (already imported) runner, so a mount costs
milliseconds. `cut` unmounts (fusermount, then a lazy umount if something still
holds the mount) and waits for the daemon, which applies the cut's variant to
the writes that were never synced before it exits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount")


def problem() -> str | None:
    """Why FUSE cannot run here, naming the fix; None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse: run on a machine (or container) with FUSE: --device /dev/fuse"
    if FUSERMOUNT is None:
        return "no fusermount3: run `bash ci/fuse.sh` (installs Debian's fuse3 and libfuse)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"the FUSE binding cannot load ({e}): run `bash ci/fuse.sh` and " \
               "`pip install -e '.[test]'`"
    return None


class Mount:
    def __init__(self, backing: str, mount: str, variant: str, seed: int, eio_at: int = 0):
        self.backing, self.mount = backing, mount
        os.makedirs(backing, exist_ok=True)
        os.makedirs(mount, exist_ok=True)
        self.stats_path = os.path.join(os.path.dirname(os.path.abspath(backing)), "fs.stats")
        if os.path.exists(self.stats_path):
            os.unlink(self.stats_path)
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.setsid()    # a Ctrl-C of the runner must not kill the disk first
                import lazyfs   # here: it loads libfuse, which problem() checks for first
                lazyfs.serve(backing, mount, variant, seed, eio_at)
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 10
        while not os.path.ismount(mount):
            if time.monotonic() > deadline or os.waitpid(self.pid, os.WNOHANG)[0]:
                self.cut()
                raise RuntimeError(f"lazyfs did not mount {mount}")
            time.sleep(0.002)

    def cut(self) -> dict:
        """Unmount (the power is off: every process on the mount is dead already)
        and wait for the daemon to apply the variant; returns its stats."""
        if self.pid:
            unmount(self.mount)
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0
        stats = {}
        if os.path.exists(self.stats_path):
            with open(self.stats_path) as f:
                stats = dict(kv.split("=") for kv in f.read().split())
        return {k: int(v) for k, v in stats.items()}

    def kill(self) -> None:
        """Last resort (a failing run): no variant, no stale mount."""
        if self.pid:
            unmount(self.mount)
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0


def unmount(mount: str) -> None:
    for cmd in ([FUSERMOUNT, "-u", "-q", mount], ["umount", "-l", mount]):
        if not os.path.ismount(mount):
            return
        subprocess.run(cmd, stderr=subprocess.DEVNULL, check=False)
        for _ in range(200):
            if not os.path.ismount(mount):
                return
            time.sleep(0.005)
