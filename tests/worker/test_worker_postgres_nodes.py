"""Several worker "nodes" sharing only a PostgreSQL database: separate processes,
separate working directories, separate instance identities, no shared files but
the ledger the test reads. One node is SIGKILLed in the middle of its jobs:
its jobs run elsewhere once its heartbeat goes stale, no job runs twice at the
same time, and every acknowledged job completes with its result.

The ledger is the one of test_worker_multiprocess (app_ledger: one O_APPEND
write per "start"/"end" line, CLOCK_MONOTONIC timestamps).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import pytest

import gq
from worker_harness import APPS_DIR, wait_until

DEAD_AFTER = "3"      # seconds without a heartbeat before a node counts as dead
JOBS = 240


class Node:
    """`gq worker app_ledger:q --data URL`, run from its own directory."""

    def __init__(self, home, url: str, ledger: str, *args: str):
        os.makedirs(home, exist_ok=True)
        self.log_path = os.path.join(home, "worker.log")
        env = dict(os.environ, GQ_TEST_DATA=url, GQ_TEST_LEDGER=ledger,
                   GQ_POSTGRES_DEAD_AFTER=DEAD_AFTER, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [APPS_DIR,
                                                            os.environ.get("PYTHONPATH")])))
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gq.cli", "worker", "app_ledger:q", "--data", url, *args],
                cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.pid = self.proc.pid

    @property
    def output(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def wait_started(self, processes: int = 1) -> None:
        wait_until(lambda: self.output.count("started (concurrency") >= processes, 30,
                   interval=0.05, what=f"worker {self.pid} to start:\n{self.output}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def nodes():
    started: list[Node] = []
    yield started
    for node in started:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()


def read_runs(ledger: str) -> dict[str, list[list]]:
    """job id -> [[start ns, end ns or None, pid], ...] in ledger order."""
    runs: dict[str, list[list]] = collections.defaultdict(list)
    with open(ledger) as f:
        for line in f.read().splitlines():
            job_id, event, t, pid = line.split(" ")
            if event == "start":
                runs[job_id].append([int(t), None, int(pid)])
            else:
                open_runs = [r for r in runs[job_id] if r[2] == int(pid) and r[1] is None]
                assert open_runs, f"an end without a start: {line}"
                open_runs[-1][1] = int(t)
    return runs


def test_sigkilled_node_jobs_run_elsewhere_never_twice_at_once(postgres_url, tmp_path, nodes):
    ledger = str(tmp_path / "ledger.txt")
    for i in range(3):
        nodes.append(Node(str(tmp_path / f"node{i}"), postgres_url, ledger,
                          "--concurrency", "8"))
    for node in nodes:
        node.wait_started()
    victim = nodes[0]
    with gq.Queue(postgres_url) as q:
        ids = []
        for start in range(0, JOBS, 40):
            ids += q.submit_many([{"type": "work" if i % 2 else "work.sync",
                                   "payload": {"n": i, "sleep": 0.4 if i % 3 == 0 else 0.05}}
                                  for i in range(start, start + 40)])

        def victim_mid_job():
            runs = read_runs(ledger) if os.path.exists(ledger) else {}
            return any(r[2] == victim.pid and r[1] is None for rs in runs.values() for r in rs)
        wait_until(victim_mid_job, 30, interval=0.01, what="the victim to be mid-job")
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        killed_at = time.monotonic_ns()

        wait_until(lambda: q.stats()["by_state"]["completed"] == JOBS, 120, interval=0.1,
                   what=f"every job completed: {q.stats()['by_state']}\n"
                        + "\n".join(n.output[-3000:] for n in nodes))
        for node in nodes[1:]:
            assert node.stop() == 0, node.output

        runs = read_runs(ledger)
        assert set(runs) == set(ids)
        interrupted, problems = [], []
        for jid in ids:
            job_runs = sorted(runs[jid])
            for run in job_runs:
                if run[1] is None:     # cut off by the SIGKILL
                    assert run[2] == victim.pid, (jid, job_runs)
                    run[1] = killed_at
                    interrupted.append(jid)
            for before, after in zip(job_runs, job_runs[1:]):
                if after[0] < before[1]:
                    problems.append((jid, job_runs))
            finished = [r for r in job_runs if r[1] != killed_at or r[2] != victim.pid]
            if len(finished) != 1:
                problems.append((jid, job_runs))
        assert not problems, f"{len(problems)} jobs ran twice at once or not exactly " \
                             f"once to the end, e.g. {problems[:3]}"
        assert interrupted, "the victim was not mid-job when killed"
        for i, jid in enumerate(ids):
            job = q.get(jid)
            assert job.state is gq.State.COMPLETED and job.result == i, job
            if jid in interrupted:
                assert (job.attempts, job.crashes) == (2, 1), job
                assert next(r for r in sorted(runs[jid]) if r[1] != killed_at)[2] != victim.pid
            else:
                # claimed by the victim but killed before its handler started: the
                # claim was an attempt, the crash is counted, it ran once elsewhere
                assert (job.attempts, job.crashes) in ((1, 0), (2, 1)), job
                if job.crashes:
                    assert runs[jid][0][2] != victim.pid
        survivors = {r[2] for jid in interrupted for r in runs[jid] if r[2] != victim.pid}
        assert survivors <= {n.pid for n in nodes[1:]}
        print(f"{len(interrupted)} jobs of the killed node ran on {sorted(survivors)}")


def test_processes_option_on_postgres(postgres_url, tmp_path, nodes):
    """`--processes 2`: forked children open their own sessions (never the parent's)."""
    ledger = str(tmp_path / "ledger.txt")
    node = Node(str(tmp_path / "node"), postgres_url, ledger, "--processes", "2",
                "--concurrency", "16")
    nodes.append(node)
    node.wait_started(processes=2)
    with gq.Queue(postgres_url) as q:
        # 64 jobs of 0.5 s, at most 16 at once per child: one child alone cannot
        # take them all, so both must run some
        ids = q.submit_many([{"type": "work", "payload": {"n": i, "sleep": 0.5}}
                             for i in range(64)])
        wait_until(lambda: q.stats()["by_state"]["completed"] == 64, 60, interval=0.1,
                   what=f"every job completed: {q.stats()['by_state']}\n{node.output}")
        assert node.stop() == 0, node.output
        runs = read_runs(ledger)
        assert all(len(runs[jid]) == 1 for jid in ids)
        assert len({runs[jid][0][2] for jid in ids}) == 2, "both children took part"
        assert "Traceback" not in node.output, node.output
