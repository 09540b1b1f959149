"""A private, throwaway PostgreSQL cluster that a test may crash.

The shared server of `bash ci/postgres.sh` must never be disturbed, so a test
that kills the postmaster makes its own: initdb in a temp dir (owned by the
`postgres` user when we are root: the server refuses to run as root), the
postmaster started directly as a child of this process (so its pid is known
and it can be SIGKILLed), on 127.0.0.1 on a free port, fsync and
synchronous_commit on, as in ci/postgres.sh. `kill()` SIGKILLs the postmaster
(and, if asked, every backend at the same moment: a crash of the whole server),
waits until no process of the old server is left, and `start()` brings it back
up, doing crash recovery from the WAL. `remove()` stops it and deletes the
cluster, however the test ended.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg

MISSING = ("the PostgreSQL server binaries (initdb, postgres) are not installed: "
           "run `bash ci/postgres.sh` once (it installs the postgresql package), or "
           "install the Debian postgresql package")


def server_bin() -> str | None:
    """The newest /usr/lib/postgresql/*/bin with initdb and postgres, or None."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
             if os.access(os.path.join(d, "initdb"), os.X_OK)
             and os.access(os.path.join(d, "postgres"), os.X_OK)]
    found.sort(key=lambda d: [int(p) if p.isdigit() else 0
                              for p in d.split("/")[-2].split(".")])
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the postmaster's backends)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ")"
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


class Cluster:
    """One private cluster; `url` names its database `gq_kill`."""

    def __init__(self, bin_dir: str):
        self.bin = bin_dir
        self.dir = tempfile.mkdtemp(prefix="gq-pgkill.")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.root = os.getuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.proc: subprocess.Popen | None = None
        self.url = f"postgresql://gq@127.0.0.1:{self.port}/gq_kill"
        self.kills = 0

    def _run(self, *args: str) -> None:
        user = {"user": "postgres", "group": "postgres"} if self.root else {}
        done = subprocess.run(args, capture_output=True, text=True, **user)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()}")

    def create(self) -> None:
        self._run(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "gq",
                  "--auth=trust", "-E", "UTF8", "--no-instructions", "--no-sync")
        self.start()
        with psycopg.connect(self.url.replace("/gq_kill", "/postgres"),
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE gq_kill")

    def start(self, timeout: float = 30.0) -> float:
        """Start the postmaster and wait until it accepts connections (after
        crash recovery). Returns the seconds that took."""
        t0 = time.monotonic()
        user = {"user": "postgres", "group": "postgres", "extra_groups": []} \
            if self.root else {}
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "max_connections=300",
             "-c", "log_min_messages=warning"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            **user)
        log.close()
        deadline = t0 + timeout
        while True:
            try:
                psycopg.connect(self.url.replace("/gq_kill", "/postgres"),
                                connect_timeout=2).close()
                return time.monotonic() - t0
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the private PostgreSQL did not start:\n"
                                       + self.log_tail()) from None
                time.sleep(0.05)

    def kill(self, backends: bool) -> float:
        """SIGKILL the postmaster (and every backend with it when `backends`),
        then wait until no process of that server is left (a new postmaster
        refuses to start while an old backend holds the shared memory).
        Returns the time.time() of the kill."""
        pid = self.proc.pid
        kids = children_of(pid)
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        if backends:
            for kid in kids:
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait()
        self.kills += 1
        deadline = time.monotonic() + 20.0
        while any(alive(k) for k in kids):
            if time.monotonic() > deadline:   # orphans the postmaster left: end them
                for kid in kids:
                    try:
                        os.kill(kid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.01)
        return killed

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no server log)"

    def remove(self) -> None:
        """Stop the server (SIGKILL: nothing of it is worth keeping) and delete
        the cluster. Safe to call at any point, more than once."""
        if self.proc is not None and self.proc.poll() is None:
            kids = children_of(self.proc.pid)
            self.proc.kill()
            self.proc.wait()
            for kid in kids:
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for _ in range(50):
            shutil.rmtree(self.dir, ignore_errors=True)
            if not os.path.exists(self.dir):
                break
            time.sleep(0.1)
