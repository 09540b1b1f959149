"""processes=N: peer worker processes under a supervisor, with real signals.

SIGKILL one child mid-job: the supervisor reclaims its running job at once and
starts a replacement; the job runs again elsewhere and completes. SIGTERM to the
supervisor drains every child and exits 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import gq

APP = textwrap.dedent("""
    import asyncio, os
    import gq
    q = gq.Queue(os.environ["GQ_DATA"])
    MARKS = os.environ["MARKS"]

    @q.handler("slow")
    async def slow(job):
        with open(os.path.join(MARKS, f"{job.id}.{job.attempt}.{os.getpid()}"), "w"):
            pass
        await asyncio.sleep(float(job.payload))
        return os.getpid()
""")


def wait_for(predicate, timeout=30.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def test_killed_child_jobs_are_reclaimed_and_rerun(tmp_path):
    data, marks = str(tmp_path / "data"), tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "app.py").write_text(APP)
    env = {**os.environ, "GQ_DATA": data, "MARKS": str(marks), "PYTHONPATH": str(tmp_path)}
    with gq.Queue(data) as q:
        victim = q.submit("slow", 30.0)          # long enough to be killed mid-job
    proc = subprocess.Popen([sys.executable, "-m", "gq.cli", "worker", "app:q",
                             "--processes", "2", "--concurrency", "2",
                             "--shutdown-timeout", "2"],
                            env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(lambda: [p.name for p in marks.iterdir()])
        job_id, attempt, pid = first[0].rsplit(".", 2)
        assert (job_id, attempt) == (victim, "1")
        with gq.Queue(data) as q:   # make the re-run short
            q.submit("slow", 0.1)
        os.kill(int(pid), signal.SIGKILL)
        # reclaimed at once (no visibility timeout wait) and started again elsewhere
        second = wait_for(lambda: [p for p in marks.iterdir()
                                   if p.name.startswith(f"{victim}.2.")], timeout=20)
        assert second[0].name.rsplit(".", 1)[1] != pid
        with gq.Queue(data) as q:
            info = q.get(victim)
            assert info.state is gq.State.RUNNING and info.attempts == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "1 running jobs reclaimed" in err
    assert "Graceful shutdown initiated" in err


KILLER = textwrap.dedent("""
    import os, signal
    import gq
    q = gq.Queue(os.environ["GQ_DATA"])

    @q.handler("poison")
    def poison(job):
        os.kill(os.getpid(), signal.SIGKILL)     # takes its whole worker process down

    @q.handler("fine")
    async def fine(job):
        return "ok"
""")


def test_a_job_that_keeps_killing_its_worker_is_quarantined(tmp_path):
    data = str(tmp_path / "data")
    (tmp_path / "killer.py").write_text(KILLER)
    env = {**os.environ, "GQ_DATA": data, "PYTHONPATH": str(tmp_path)}
    with gq.Queue(data) as q:
        poison = q.submit("poison", {})
        fine = [q.submit("fine", i) for i in range(20)]
    proc = subprocess.Popen([sys.executable, "-m", "gq.cli", "worker", "killer:q",
                             "--processes", "2", "--concurrency", "1"],
                            env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        with gq.Queue(data) as q:
            wait_for(lambda: q.get(poison).state is gq.State.DEAD_LETTER, timeout=60)
            info = q.get(poison)
            assert info.error.category is gq.Category.SYSTEM
            assert "died while running it 3 times" in info.error.message
            wait_for(lambda: all(q.get(j).state is gq.State.COMPLETED for j in fine))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err.count("exited with -9") == 3
