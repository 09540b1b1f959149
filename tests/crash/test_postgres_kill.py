"""The PostgreSQL postmaster is `kill -9`ed under load, several times, and
restarted; gq must lose nothing it acknowledged and reconnect by itself.

A private cluster (tests/crash/pg_cluster.py; the shared server of
`bash ci/postgres.sh` is never touched) takes the load of real processes
(tests/crash/pg_load.py): one-by-one `submit`s, concurrent `asubmit`s,
`submit_many` batches with caller-chosen ids and keyed submits (both
resubmitted after an error), an operator cancelling and retrying, a worker
finishing by hand through the store, and two real `gq.Worker` processes. At
seeded random moments the postmaster is SIGKILLed (half the time with every
backend at once, a crash of the whole server; else alone, its backends ending
themselves), left down a moment (once for longer than a read waits for a
new session) and restarted (crash recovery from the WAL).
The queues are never reopened: each process must get going again by itself
after each restart (its time to do so is measured), every call in flight at
a kill must end, in a gq error or in a success that committed (any other
exception ends its process, which fails the test), and no call may hang.
After the last restart the load stops, the workers drain the queue, and
tests/crash/pg_checker.py checks the ledgers against the rows; `gq check` must
pass, and every worker must still be alive, heartbeating and listening, and
none may have been taken for dead.

Kills: GQ_PG_KILLS (default 4). Seed: GQ_TEST_SEED.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

import gq
import pg_checker
from gq._core import states as S
from gq.store.postgres.store import READ_WAIT
from pg_cluster import MISSING, Cluster, server_bin

HERE = os.path.dirname(os.path.abspath(__file__))
LOAD = os.path.join(HERE, "pg_load.py")
ROLES = ("one", "async", "many", "keyed", "operator", "manual")
WORKERS = 2
RECONNECT_LIMIT = 20.0   # seconds after a restart by which every process must succeed
HANG = 10.0              # no call may take longer
# One outage outlasts a read's wait for a session (READ_WAIT, 5 s): reads and
# heartbeats fail then, and must go on after; and the heartbeat silence after
# which a worker counts as dead (GQ_POSTGRES_DEAD_AFTER, 10 s by default, set
# to DEAD_AFTER here): when the server is back every worker's heartbeat is that
# old, and none may reclaim the others' jobs as a dead worker's.
DEAD_AFTER = 4.0
LONG_OUTAGE = max(READ_WAIT, DEAD_AFTER) + 1.5
DRAIN_LIMIT = 40.0


@pytest.fixture
def cluster():
    bin_dir = server_bin()
    if bin_dir is None:
        pytest.fail(MISSING)
    c = Cluster(bin_dir)
    try:
        c.create()
        yield c
    finally:
        c.remove()


class Load:
    """The load processes; never leaves one behind."""

    def __init__(self, url: str, out: str):
        self.url, self.out = url, out
        self.stop_file = os.path.join(out, "stop")
        self.procs: dict[str, subprocess.Popen] = {}
        # the gq under test, in every load process
        root = os.path.dirname(os.path.dirname(os.path.abspath(gq.__file__)))
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p),
            GQ_POSTGRES_DEAD_AFTER=str(DEAD_AFTER))

    def start(self, role: str, name: str) -> None:
        log = open(os.path.join(self.out, f"{name}.log"), "w")
        self.procs[name] = subprocess.Popen(
            [sys.executable, LOAD, role, self.url, os.path.join(self.out, f"{name}.ledger"),
             name, self.stop_file], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()

    def log(self, name: str, tail: int | None = 3000) -> str:
        """A process's output (its end: `tail` characters), without the flaky
        jobs' expected failures."""
        with open(os.path.join(self.out, f"{name}.log")) as f:
            text = "".join(line for line in f if "flaky by design" not in line)
        return text[-tail:] if tail else text

    def lines(self):
        return pg_checker.read_ledgers(os.path.join(self.out, "*.ledger"))

    def stop_submitters(self) -> None:
        open(self.stop_file, "w").close()
        for name, proc in self.procs.items():
            if not name.startswith(("worker", "manual")):
                assert proc.wait(30) == 0, f"{name} failed:\n{self.log(name)}"

    def stop_workers(self) -> None:
        open(self.stop_file + ".workers", "w").close()
        for name, proc in self.procs.items():
            if name.startswith("worker"):
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            assert proc.wait(30) == 0, f"{name} failed:\n{self.log(name)}"

    def close(self) -> None:
        for path in (self.stop_file, self.stop_file + ".workers"):
            open(path, "w").close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def succeeded_since(lines, since: float) -> set[str]:
    return {line.source for line in lines if line.kind in pg_checker.SUCCESS
            and (line.t0 if line.kind == "RUN" else line.t1) >= since}


def wait_until_all_succeed(load: Load, names, since: float, limit: float) -> None:
    deadline = time.monotonic() + limit
    while True:
        missing = set(names) - succeeded_since(load.lines(), since)
        if not missing:
            return
        for name in missing:
            assert load.procs[name].poll() is None, \
                f"{name} exited during the test:\n{load.log(name)}"
        assert time.monotonic() < deadline, (
            f"{sorted(missing)} did not get a call through within {limit:g}s of the "
            "server accepting connections again (gq did not reconnect):\n"
            + "\n".join(f"--- {n}\n{load.log(n)}" for n in sorted(missing)))
        time.sleep(0.05)


def unfinished(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, type, state, attempts, lease_owner FROM gq_jobs WHERE state = ANY(%s)",
            ([S.PENDING, S.SCHEDULED, S.RUNNING],)).fetchall()


def heartbeat_ages(url: str) -> dict[str, float]:
    """Seconds since each live instance's last heartbeat, by instance id."""
    with psycopg.connect(url) as conn:
        return dict(conn.execute(
            "SELECT id, extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 "
            "FROM gq_instances WHERE NOT clean_exit").fetchall())


def listen_sessions(url: str) -> int:
    """Sessions whose last statement was a LISTEN (each worker process has one)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND query LIKE 'LISTEN %'").fetchone()[0]


def test_postmaster_kill_loses_nothing_and_gq_reconnects(cluster, tmp_path, rng):
    kills = int(os.environ.get("GQ_PG_KILLS", "4"))
    gq.Queue(cluster.url).close()   # the schema, before the load processes race for it
    load = Load(cluster.url, str(tmp_path))
    try:
        for i in range(WORKERS):
            load.start("worker", f"worker{i}")
        for role in ROLES:
            load.start(role, role)
        names = list(load.procs)
        wait_until_all_succeed(load, names, 0.0, 60.0)   # started, imported, working
        killed, ups, recoveries, whole = [], [], [], []
        long_one = rng.randrange(kills)
        for i in range(kills):
            time.sleep(rng.uniform(0.3, 1.5))
            whole.append(rng.random() < 0.5)
            killed.append(cluster.kill(backends=whole[-1]))
            time.sleep(LONG_OUTAGE if i == long_one else rng.uniform(0.0, 1.0))
            recoveries.append(cluster.start())
            ups.append(time.time())
            # no Queue is reopened: each process must get going again by itself
            wait_until_all_succeed(load, names, ups[-1], RECONNECT_LIMIT)
        time.sleep(1.0)
        load.stop_submitters()

        deadline = time.monotonic() + DRAIN_LIMIT
        while left := unfinished(cluster.url):
            assert time.monotonic() < deadline, (
                f"{len(left)} jobs still unfinished {DRAIN_LIMIT:g}s after the load "
                f"stopped (id, type, state, attempts, owner): {left[:10]}")
            time.sleep(0.2)
        ages = heartbeat_ages(cluster.url)
        for i in range(WORKERS):
            name = f"worker{i}"
            assert load.procs[name].poll() is None, f"{name} died:\n{load.log(name)}"
            mine = [age for inst, age in ages.items()
                    if f"-{load.procs[name].pid}-" in inst]
            assert mine and mine[0] < DEAD_AFTER, (
                f"{name} no longer heartbeats (" + (f"its row is {mine[0]:.1f}s old" if mine
                else "its row is gone: another worker found it dead") + "): its running "
                f"jobs are, or will be, reclaimed as a dead worker's:\n{load.log(name)}")
        listening = listen_sessions(cluster.url)
        assert listening >= WORKERS, (
            f"{listening} LISTEN sessions for {WORKERS} worker processes after the last "
            "restart: a worker's wake-up session did not reconnect")
        load.stop_workers()
        # no worker died: none may have been found dead (its jobs would run twice)
        found_dead = [line for i in range(WORKERS) for line in
                      load.log(f"worker{i}", None).splitlines() if "from dead worker" in line]
        assert not found_dead, ("live workers were taken for dead after a restart:\n"
                                + "\n".join(found_dead[:10]))

        checked = subprocess.run([sys.executable, "-m", "gq.cli", "check", "--data",
                                  cluster.url], capture_output=True, text=True,
                                 env=load.env)
        assert checked.returncode == 0, f"gq check failed:\n{checked.stdout}{checked.stderr}"

        lines = load.lines()
        v = pg_checker.check(lines, pg_checker.stored_jobs(cluster.url), killed)
        reconnect = pg_checker.reconnect_times(lines, ups, names)
        print(f"kills: {len(killed)} (whole server: {sum(whole)}, postmaster alone: "
              f"{len(whole) - sum(whole)}); restart to accepting connections: "
              + ", ".join(f"{r:.2f}s" for r in recoveries))
        print(f"acknowledged submits: {v.acknowledged}, lost: {len(v.lost)}, broken "
              f"transitions or states: {len(v.broken)}, duplicates (explained by a kill): "
              f"{len(v.duplicates)}, unexplained: {len(v.unexplained)}, phantoms: "
              f"{len(v.phantoms)}, stored without an acknowledgement: "
              f"{v.unacknowledged_stored}, resubmits with the same ids refused as "
              f"already stored: {v.found_stored}")
        print(f"calls in flight at a kill: {v.in_flight_errors} raised, "
              f"{v.in_flight_acks} returned (and are stored); longest call: "
              f"{v.longest_call:.2f}s; jobs by (type, state): {v.counts}")
        worst = max(t for times in reconnect.values() for t in times if t is not None)
        print(f"seconds from a restart to each process's first call that succeeded: "
              f"{ {n: [round(t, 2) for t in ts] for n, ts in reconnect.items()} }, "
              f"worst {worst:.2f}s")
        assert not v.problems(), "\n".join(v.problems())
        assert v.longest_call < HANG, f"a call took {v.longest_call:.1f}s (a hang)"
        assert v.acknowledged > 100, "too little load got through to prove anything"
    finally:
        load.close()
        if sys.exc_info()[0] is not None:
            print(cluster.log_tail())
