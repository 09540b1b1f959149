"""`gq export` / `gq import` move every unfinished job, with its state, attempts
and dependencies, between stores: LMDB -> PostgreSQL and back, on real stores."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

import gq
from gq._core import states as S
from gq.errors import DuplicateJobId
from gq.transfer import export_jobs, import_jobs


def claim(store, job_id, owner="old-worker"):
    rec = store.get(job_id)
    (claimed,) = store.claim([(job_id, rec.ready_seq)], owner=owner,
                             lease_deadline=time.monotonic() + 60, now=time.time())
    return claimed


def fill(q):
    """A source store with a job in every state that matters. Returns the ids."""
    store = q.store
    ids = {}
    ids["done_dep"] = q.submit("t", {"step": "fetch"}, id="done-dep")
    ids["open_dep"] = q.submit("t", {"step": "parse"}, id="open-dep", priority=4)
    claim(store, "done-dep")
    store.finish("done-dep", attempt=1, owner="old-worker", state=S.COMPLETED,
                 now=time.time(), result=b'{"ok":1}')
    ids["child"] = q.submit("t", {"step": "store"}, id="child",
                            depends_on=["done-dep", "open-dep"])
    ids["delayed"] = q.submit("t", [1, 2.5, "x"], delay=3600, key="nightly")
    ids["running"] = q.submit("u", None, max_attempts=7)
    claim(store, ids["running"])
    ids["dead"] = q.submit("u", {"n": 1})
    claim(store, ids["dead"])
    store.finish(ids["dead"], attempt=1, owner="old-worker", state=S.DEAD_LETTER,
                 now=time.time(), error=b'{"category":"system","message":"boom"}')
    ids["finished"] = q.submit("t", "not moved")
    claim(store, ids["finished"])
    store.finish(ids["finished"], attempt=1, owner="old-worker", state=S.COMPLETED,
                 now=time.time())
    ids["cancelled"] = q.submit("t", "not moved either")
    q.cancel(ids["cancelled"])
    q.pause("u")
    return ids


def check_moved(source_snapshot, q, ids):
    """Everything unfinished arrived as it was (running -> scheduled), and works."""
    got = {j.id: j for j in q.list(limit=1000)}
    assert set(got) == {ids[k] for k in ("done_dep", "open_dep", "child", "delayed",
                                         "running", "dead")}
    for job_id, before in source_snapshot.items():
        if job_id not in got:
            continue
        after = got[job_id]
        for field in ("type", "priority", "payload", "result", "attempts", "crashes",
                      "max_attempts", "depends_on", "key", "created_at", "run_at"):
            if field == "run_at" and before.state is gq.State.RUNNING:
                continue
            assert getattr(after, field) == getattr(before, field), (job_id, field)
        expected = gq.State.SCHEDULED if before.state is gq.State.RUNNING else before.state
        assert after.state is expected, (job_id, after.state)
        assert (after.error is None) == (before.error is None)
    assert q.get(ids["dead"]).error.message == "boom"
    assert [j.id for j in q.list(state="scheduled")][:1] == [ids["open_dep"]]  # order kept
    assert q.paused() == frozenset({"u"})
    assert q.submit("t", key="nightly") == ids["delayed"]     # the key still holds
    # the dependency still gates the child, and its completion releases it
    store = q.store
    claimed = claim(store, ids["open_dep"], owner="new-worker")
    store.finish(claimed.id, attempt=claimed.attempts, owner="new-worker",
                 state=S.COMPLETED, now=time.time())
    assert q.get(ids["child"]).state is gq.State.SCHEDULED
    # moved jobs run in the new store: the once-running job has its attempts kept
    q.resume("u")
    rerun = claim(store, ids["running"], owner="new-worker")
    assert rerun.attempts == 2


def move(source_q, target_q) -> int:
    buf = io.BytesIO()
    n = export_jobs(source_q.store, buf)
    buf.seek(0)
    assert import_jobs(target_q.store, buf) == n
    return n


def test_lmdb_to_postgres_and_back(tmp_path, postgres_url):
    with gq.Queue(str(tmp_path / "a")) as lmdb_q:
        ids = fill(lmdb_q)
        snapshot = {j.id: j for j in lmdb_q.list(limit=1000)}
        with gq.Queue(postgres_url) as pg_q:
            assert move(lmdb_q, pg_q) == 6
            with gq.Queue(str(tmp_path / "b")) as back_q:
                move(pg_q, back_q)          # before the checks change the PG store
                check_moved(snapshot, back_q, ids)
            check_moved(snapshot, pg_q, ids)


def test_import_is_all_or_nothing(tmp_path, location):
    with gq.Queue(str(tmp_path / "src")) as src, gq.Queue(location) as dst:
        fill(src)
        dst.submit("t", id="child")        # one id of the export is taken
        buf = io.BytesIO()
        export_jobs(src.store, buf)
        buf.seek(0)
        with pytest.raises(DuplicateJobId, match="child"):
            import_jobs(dst.store, buf)
        assert [j.id for j in dst.list()] == ["child"]


def test_cli_export_import_round_trip(tmp_path, postgres_url):
    data = str(tmp_path / "data")
    with gq.Queue(data) as q:
        ids = fill(q)
    dump = str(tmp_path / "jobs.jsonl")
    env = dict(os.environ)
    run = lambda *args: subprocess.run([sys.executable, "-m", "gq.cli", *args],  # noqa: E731
                                       capture_output=True, text=True, env=env, timeout=120)
    out = run("export", "--data", data, "-o", dump)
    assert out.returncode == 0 and "exported 6 jobs" in out.stderr, out.stderr
    out = run("import", dump, "--data", postgres_url)
    assert out.returncode == 0 and "imported 6 jobs" in out.stdout, out.stderr
    assert postgres_url.split("@")[0] in out.stdout
    with gq.Queue(postgres_url) as q:
        assert q.get(ids["child"]).state is gq.State.PENDING
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"gq_export": 1, "jobs": 1}\n{"id": "x"}\n')
    out = run("import", str(bad), "--data", str(tmp_path / "other"))
    assert out.returncode == 1 and "line 2" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
