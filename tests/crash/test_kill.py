"""Acknowledged jobs survive SIGKILL, and concurrent processes lose nothing.

Real processes, real signals, real LMDB: the submitter prints an id only after
submit returned; whatever it printed must be in the store, byte for byte, after
the process is killed at a random moment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


import gq

SUBMITTER = os.path.join(os.path.dirname(__file__), "submitter.py")
sys.path.insert(0, os.path.dirname(__file__))
from submitter import payload  # noqa: E402


def start(data_dir, mode, count, tag):
    return subprocess.Popen([sys.executable, SUBMITTER, data_dir, mode, str(count), tag],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def acked(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines(keepends=True):
        if line.endswith("\n") and line.startswith("ACK "):   # a torn last line is not an ack
            _, jid, name = line.split()
            out[jid] = name
    return out


def test_sigkill_at_random_moments_loses_no_acknowledged_job(data_dir, rng):
    rounds = int(os.environ.get("GQ_KILL_ROUNDS", "24"))
    expected: dict[str, str] = {}
    modes = ["single", "batch", "async"]
    for r in range(rounds):
        mode = modes[r % 3]
        proc = start(data_dir, mode, 100_000, f"r{r}")
        # wait for the first acknowledgement, then kill at a random moment
        first = proc.stdout.readline()
        assert first.startswith("ACK"), (first, proc.stderr.read())
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        got = acked(first + rest)
        assert got, f"round {r}: nothing acknowledged"
        expected.update(got)
    with gq.Queue(data_dir) as q:
        stats = q.stats()
        missing = [j for j in expected if _missing(q, j)]
        assert not missing, f"{len(missing)} acknowledged jobs lost, e.g. {missing[:5]} ({rng})"
        for jid, name in expected.items():
            job = q.get(jid)
            assert job.payload == payload(name), (jid, name, rng)
            assert job.state is gq.State.SCHEDULED
        seqs = [q.get(j).seq for j in expected]
        assert len(set(seqs)) == len(seqs)
        # a killed process may have committed jobs it never printed; never fewer
        assert stats["total"] >= len(expected)
    print(f"{rounds} kill rounds, {len(expected)} acknowledged jobs, 0 lost")


def _missing(q, jid) -> bool:
    try:
        q.get(jid)
        return False
    except gq.JobNotFound:
        return True


def test_four_processes_submitting_at_once(data_dir):
    gq.Queue(data_dir).close()   # create the store before the race
    procs = [start(data_dir, mode, 1_000, f"p{i}")
             for i, mode in enumerate(["single", "batch", "async", "single"])]
    expected = {}
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        expected.update(acked(out))
    assert len(expected) == 4_000
    with gq.Queue(data_dir) as q:
        assert q.stats()["total"] == 4_000
        seqs = []
        for jid, name in expected.items():
            job = q.get(jid)
            assert job.payload == payload(name)
            seqs.append(job.seq)
        assert len(set(seqs)) == 4_000
        assert sorted(seqs) == list(range(min(seqs), min(seqs) + 4_000))
