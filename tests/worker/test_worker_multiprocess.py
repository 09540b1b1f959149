"""Several worker processes on one data dir: every job's handler runs exactly
once, never concurrently with itself, and every job ends `completed`.

Handlers write "<id> start|end <monotonic ns> <pid>" lines to one O_APPEND
ledger (one write(2) per line), so the file is the true order of events across
processes (CLOCK_MONOTONIC is system-wide on Linux).
"""

from __future__ import annotations

import collections
import gq
from worker_harness import wait_until

JOBS = 2000


def submit_jobs(q, n):
    ids = []
    for start in range(0, n, 100):      # in batches, while the workers are running
        ids += q.submit_many([
            {"type": "work" if i % 2 else "work.sync",
             "payload": {"n": i, "sleep": 0.002 if i % 2 else 0.001}}
            for i in range(start, min(n, start + 100))])
    return ids


def read_ledger(path):
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n") or not text
    events = collections.defaultdict(list)
    for lineno, line in enumerate(text.splitlines()):
        job_id, event, t, pid = line.split(" ")
        events[job_id].append((lineno, event, int(t), int(pid)))
    return events


def check_exactly_once(q, ids, ledger):
    events = read_ledger(ledger)
    assert set(events) == set(ids), (len(set(events) - set(ids)), len(set(ids) - set(events)))
    pids = collections.Counter()
    problems = []
    for jid in ids:
        ev = events[jid]
        kinds = [e[1] for e in ev]
        if kinds != ["start", "end"]:
            problems.append((jid, ev))
            continue
        (l1, _, t1, p1), (l2, _, t2, p2) = ev
        if not (l1 < l2 and t1 <= t2 and p1 == p2):
            problems.append((jid, ev))
        pids[p1] += 1
    assert not problems, f"{len(problems)} jobs ran other than exactly once, e.g. {problems[:5]}"
    for i, jid in enumerate(ids):
        job = q.get(jid)
        assert job.state is gq.State.COMPLETED and job.attempts == 1, job
        assert job.result == i
    return pids


def run_until_done(q, ids, workers, timeout):
    wait_until(lambda: q.stats()["by_state"]["completed"] == len(ids), timeout,
               interval=0.05, what=f"{len(ids)} jobs completed "
               f"({[w.output[-2000:] for w in workers]})")


def test_two_worker_processes_run_each_job_exactly_once(location, tmp_path, markers,
                                                        spawn_worker):
    ledger = str(tmp_path / "ledger.txt")
    env = {"GQ_TEST_LEDGER": ledger}
    with gq.Queue(location) as q:
        workers = [spawn_worker("app_ledger:q", "--concurrency", "32", env=env)
                   for _ in range(2)]
        for w in workers:
            w.wait_started()
        ids = submit_jobs(q, JOBS)
        run_until_done(q, ids, workers, timeout=60)
        for w in workers:
            assert w.terminate() == 0, w.output
        pids = check_exactly_once(q, ids, ledger)
        print(f"jobs per worker process: {dict(pids)}")
        assert set(pids) == {w.pid for w in workers}, pids   # both took part
        for w in workers:
            assert "refused" not in w.output and "Traceback" not in w.output


def test_processes_option_runs_each_job_exactly_once(location, tmp_path, markers,
                                                     spawn_worker):
    """`gq worker --processes 2`: a supervisor and two forked peer workers."""
    ledger = str(tmp_path / "ledger.txt")
    with gq.Queue(location) as q:
        worker = spawn_worker("app_ledger:q", "--processes", "2", "--concurrency", "32",
                              env={"GQ_TEST_LEDGER": ledger})
        worker.wait_started(processes=2)
        ids = submit_jobs(q, JOBS // 2)
        run_until_done(q, ids, [worker], timeout=60)
        assert worker.terminate() == 0, worker.output
        pids = check_exactly_once(q, ids, ledger)
        print(f"jobs per worker process: {dict(pids)}")
        assert len(pids) == 2 and worker.pid not in pids, pids   # the children did it
        assert "Traceback" not in worker.output
