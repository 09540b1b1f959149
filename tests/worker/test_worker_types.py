"""Workers for a subset of types (`gq.Worker(q, types=[...])`, `gq worker --types`):
a worker claims only the types it serves; other types stay scheduled, with no
attempt used, for the workers that serve them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import gq
from test_worker_multiprocess import (check_exactly_once, read_ledger, run_until_done,
                                      submit_jobs)
from worker_harness import APPS_DIR, wait_all


def two_kinds(q):
    ran = []

    @q.handler("email.send")
    async def send(job):
        ran.append(job.type)

    @q.handler("email.bounce")
    async def bounce(job):
        ran.append(job.type)

    @q.handler("report")
    async def report(job):
        ran.append(job.type)
    return ran


def test_a_worker_claims_only_the_types_it_serves(make_queue, start_worker):
    q = make_queue()
    ran = two_kinds(q)
    emails = q.submit_many([{"type": "email.send"}, {"type": "email.bounce"}])
    (report,) = q.submit_many([{"type": "report", "priority": 100}])   # first in line
    worker = start_worker(q, types=["email.*"])
    wait_all(q, emails, "completed")
    worker.stop()
    job = q.get(report)
    assert job.state is gq.State.SCHEDULED and job.attempts == 0, job
    assert sorted(ran) == ["email.bounce", "email.send"]

    start_worker(q, types=["report"])
    wait_all(q, [report], "completed")
    assert q.get(report).attempts == 1


def test_worker_processes_split_by_types(location, tmp_path, markers, spawn_worker):
    """Two `gq worker` processes, `--types work` and `--types 'work.*'`: every job
    of a type runs once, in the process that serves it."""
    ledger = str(tmp_path / "ledger.txt")
    env = {"GQ_TEST_LEDGER": ledger}
    with gq.Queue(location) as q:
        plain = spawn_worker("app_ledger:q", "--types", "work", env=env)
        dotted = spawn_worker("app_ledger:q", "--types", "work.*", env=env)
        for w in (plain, dotted):
            w.wait_started()
        assert "handlers: work.sync" in dotted.output, dotted.output
        ids = submit_jobs(q, 400)
        run_until_done(q, ids, [plain, dotted], timeout=60)
        for w in (plain, dotted):
            assert w.terminate() == 0, w.output
        check_exactly_once(q, ids, ledger)
        events = read_ledger(ledger)
        ran_by = {q.get(jid).type: set() for jid in ids}
        for jid in ids:
            ran_by[q.get(jid).type].add(events[jid][0][3])
        assert ran_by == {"work": {plain.pid}, "work.sync": {dotted.pid}}, ran_by


@pytest.mark.parametrize("types, message", [
    ("email.*", "not the bare string 'email.*'"),
    ([], "types is empty"),
    (["email.*", ""], "each must be a job type or a glob pattern"),
    ([3], "types holds 3"),
    (5, "must be a list of job types or glob patterns, got 5"),
    (["emial.*"], "types pattern 'emial.*' matches no registered handler (handlers: "
                  "email.bounce, email.send, report)"),
])
def test_bad_types_are_refused_before_the_worker_starts(make_queue, types, message):
    q = make_queue()
    two_kinds(q)
    with pytest.raises(gq.ValidationError) as e:
        gq.Worker(q, types=types)
    assert message in str(e.value)


def test_gq_worker_types_that_match_nothing(data_dir, tmp_path):
    env = dict(os.environ, GQ_TEST_DATA=data_dir, GQ_TEST_LEDGER=str(tmp_path / "ledger"))
    result = subprocess.run([sys.executable, "-m", "gq.cli", "worker", "app_ledger:q",
                             "--data", data_dir, "--types", "work,nope.*"], cwd=APPS_DIR,
                            env=env, text=True, capture_output=True, timeout=30)
    assert result.returncode != 0
    assert "types pattern 'nope.*' matches no registered handler" in result.stderr, result
