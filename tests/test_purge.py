"""Retention: purge deletes finished jobs past an age with all their index
entries; unfinished and dead-lettered jobs stay; the store checks clean after."""

from __future__ import annotations

import subprocess
import sys
import time

import gq
from gq._core import states as S


def test_purge_removes_only_old_finished_jobs(queue):
    keep = queue.submit("t", 1, key="k-keep")
    done = queue.submit("t", 2, key="k-done")
    cancelled = queue.submit("t", 3)
    waiting = queue.submit("t", 4, depends_on=[keep])
    queue.cancel(cancelled)
    # complete `done` through the store's fenced path, as a worker would
    rows = queue.store.ready_after(0, 10)
    [rec] = queue.store.claim([(r[3], r[0]) for r in rows if r[3] == done], owner="w",
                              lease_deadline=time.monotonic() + 60, now=time.time())
    queue.store.finish(done, attempt=1, owner="w", state=S.COMPLETED, now=time.time(),
                       result=b"true")
    assert queue.purge(older_than=3600) == 0          # nothing that old yet
    assert queue.purge(older_than=0) == 2
    ids = {j.id for j in queue.list(limit=100)}
    assert ids == {keep, waiting}
    assert queue.stats()["total"] == 2
    assert queue.store.check().ok
    # the purged job's idempotency key is free again; the live one still dedups
    assert queue.submit("t", 5, key="k-done") != done
    assert queue.submit("t", 6, key="k-keep") == keep


def test_cli_purge(tmp_path):
    data = str(tmp_path / "d")
    with gq.Queue(data) as q:
        q.cancel(q.submit("t"))
        q.submit("t")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "gq.cli", *args, "--data", data],
                              capture_output=True, text=True, timeout=60)
    out = run("purge", "--older-than", "7d")
    assert out.returncode == 0 and "purged 0" in out.stdout
    out = run("purge", "--older-than", "0")
    assert out.returncode == 0 and "purged 1" in out.stdout
    out = run("purge", "--older-than", "soon")
    assert out.returncode == 1 and "is not a number" in out.stderr
    assert "Traceback" not in out.stderr
