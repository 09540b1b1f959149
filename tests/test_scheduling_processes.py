"""Scheduling guarantees that only hold if they hold across processes: real
`python` processes on one data dir, released together at one instant."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import orjson

import gq

RACER = textwrap.dedent("""
    import sys, time, orjson, gq
    data, start, mode, n = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    q = gq.Queue(data, max_depth=int(sys.argv[5]) if len(sys.argv) > 5 else None)
    while time.time() < start:      # everyone leaves the blocks at the same instant
        pass
    out = []
    for i in range(n):
        try:
            if mode == "key":
                out.append(q.submit("order", {"pid": i}, key="order:42"))
            else:
                out.append(q.submit("load", {"i": i}))
        except gq.QueueFull:
            out.append(None)
    print(orjson.dumps(out).decode())
""")


def race(location, mode, n, *extra, processes=4):
    start = time.time() + 2.0   # time for every interpreter to start and open the store
    procs = [subprocess.Popen([sys.executable, "-c", RACER, location, repr(start), mode,
                               str(n), *extra], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(orjson.loads(out))
    return results


def test_four_processes_racing_on_one_key_create_one_job(location):
    gq.Queue(location).close()   # create the store before the race
    results = race(location, "key", 1)
    ids = {r[0] for r in results}
    assert len(ids) == 1, results
    with gq.Queue(location) as q:
        assert q.stats()["total"] == 1
        assert q.get(ids.pop()).key == "order:42"


def test_hard_limit_holds_under_concurrent_submitters(location):
    gq.Queue(location).close()
    results = race(location, "load", 40, "100")
    accepted = [job_id for r in results for job_id in r if job_id is not None]
    refused = sum(job_id is None for r in results for job_id in r)
    assert len(accepted) == 100 and refused == 60, (len(accepted), refused)
    with gq.Queue(location) as q:
        assert q.stats()["total"] == 100
