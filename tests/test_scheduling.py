"""Scheduling on a real store: dependencies (cycles, release, blocked chains),
lifetime, idempotency windows, the depth limit and warning, delayed ordering.

Jobs are moved through their states with the store's own claim / finish (what
a worker does), so no worker is needed and every step is deterministic.
"""

from __future__ import annotations

import logging
import time

import pytest

import gq
from gq._core import states as S
from gq.metrics import JOBS_BLOCKED, QUEUE_DEPTH_WARNING


@pytest.fixture
def queue(location):
    """A queue on this test's backend (LMDB data dir or PostgreSQL schema)."""
    q = gq.Queue(location)
    yield q
    q.close()


def claim(q, job_id, owner="w"):
    rec = q.store.get(job_id)
    (claimed,) = q.store.claim([(job_id, rec.ready_seq)], owner=owner,
                               lease_deadline=time.monotonic() + 60, now=time.time())
    return claimed


def finish(q, job_id, state, owner="w", now=None):
    rec = claim(q, job_id, owner)
    q.store.finish(job_id, attempt=rec.attempts, owner=owner, state=state,
                   now=time.time() if now is None else now,
                   result=b"1" if state == S.COMPLETED else b"",
                   error=b"" if state == S.COMPLETED else b'{"category":"system",'
                   b'"message":"boom","traceback":null,"attempt":1}',
                   run_at=time.time() + 3600 if state == S.SCHEDULED else 0.0)


def state(q, job_id) -> str:
    return q.get(job_id).state.value


class TestCycles:
    def test_self_dependency(self, queue):
        with pytest.raises(gq.CycleError, match="'me' -> 'me'"):
            queue.submit("a", id="me", depends_on=["me"])
        with pytest.raises(gq.CycleError):
            queue.submit_many([{"type": "a", "id": "me", "depends_on": ["me"]}])
        assert queue.stats()["total"] == 0

    def test_cycle_whose_jobs_also_depend_on_a_stored_job(self, queue):
        stored = queue.submit("a", id="stored")
        with pytest.raises(gq.CycleError) as info:
            queue.submit_many([
                {"type": "a", "id": "x", "depends_on": [stored, "y"]},
                {"type": "a", "id": "y", "depends_on": ["z"]},
                {"type": "a", "id": "z", "depends_on": [stored, "x"]},
            ])
        assert set(info.value.cycle) == {"x", "y", "z"}
        assert queue.stats()["total"] == 1

    def test_a_stored_job_can_never_close_a_cycle(self, queue):
        # A stored job's dependencies are fixed and existed before it, so no new
        # job can be among them; re-using its id in a cycle is refused whole.
        queue.submit("a", id="old")
        with pytest.raises(gq.ValidationError):
            queue.submit_many([{"type": "a", "id": "old", "depends_on": ["new"]},
                               {"type": "a", "id": "new", "depends_on": ["old"]}])
        assert queue.stats()["total"] == 1


class TestRelease:
    def test_last_dependency_completing_schedules_the_dependent(self, queue):
        a, b = queue.submit("t"), queue.submit("t")
        child = queue.submit("t", depends_on=[a, b])
        finish(queue, a, S.COMPLETED)
        assert state(queue, child) == "pending"
        assert queue.waits(child)["waiting_on"] == [{"id": b, "state": "scheduled"}]
        finish(queue, b, S.COMPLETED)
        # same transaction: no moment where b is completed and child still pending
        assert state(queue, child) == "scheduled"
        assert q_ready(queue) == [child]

    def test_dependency_already_completed_starts_scheduled(self, queue):
        a = queue.submit("t")
        finish(queue, a, S.COMPLETED)
        assert state(queue, queue.submit("t", depends_on=[a])) == "scheduled"


def q_ready(q):
    return [row[3] for row in q.store.ready_after(0, 1000)]


class TestBlocked:
    @pytest.mark.parametrize("end", [S.DEAD_LETTER, S.FAILED, "cancelled"])
    def test_chain_is_blocked_and_logged(self, queue, caplog, end):
        root = queue.submit("t", id="root")
        queue.submit_many([{"type": "t", "id": "d1", "depends_on": ["root"]},
                           {"type": "t", "id": "d2", "depends_on": ["d1"]},
                           {"type": "t", "id": "other"}])
        with caplog.at_level(logging.WARNING, logger="gq.dependencies"):
            if end == "cancelled":
                queue.cancel(root)
            else:
                finish(queue, root, end)
        assert state(queue, "d1") == state(queue, "d2") == "pending"
        assert queue.waits("d2") == {"waiting_on": [{"id": "d1", "state": "pending"}],
                                     "blocked": True, "blocked_by": [["root", "d1", "d2"]]}
        assert not queue.waits("other")["blocked"]
        assert queue.store.blocked_count() == 2
        lines = [r.getMessage() for r in caplog.records]
        assert any("Dependency not satisfiable" in m and "root -> d1 -> d2" in m
                   for m in lines), lines

    def test_new_job_on_a_failed_or_blocked_job_is_blocked_at_submit(self, queue):
        root = queue.submit("t", id="root")
        queue.submit("t", id="d1", depends_on=[root])
        finish(queue, root, S.FAILED)
        queue.submit_many([{"type": "t", "id": "late2", "depends_on": ["late1"]},
                           {"type": "t", "id": "late1", "depends_on": ["d1"]}])
        queue.submit("t", id="direct", depends_on=[root])
        assert queue.waits("late2")["blocked_by"] == [["root", "d1", "late1", "late2"]]
        assert queue.waits("direct")["blocked_by"] == [["root", "direct"]]
        assert queue.store.blocked_count() == 4

    def test_retried_dependency_that_completes_releases_its_dependents(self, queue):
        root = queue.submit("t", id="root")
        queue.submit("t", id="d1", depends_on=[root])
        queue.submit("t", id="d2", depends_on=["d1"])
        finish(queue, root, S.DEAD_LETTER)
        assert queue.store.blocked_count() == 2
        queue.retry(root)                      # dead_letter -> scheduled: unblocked
        assert queue.store.blocked_count() == 0 and not queue.waits("d2")["blocked"]
        finish(queue, root, S.COMPLETED)
        assert state(queue, "d1") == "scheduled" and state(queue, "d2") == "pending"
        finish(queue, "d1", S.COMPLETED)
        assert state(queue, "d2") == "scheduled"

    def test_dead_lettered_again_blocks_again(self, queue):
        root = queue.submit("t", id="root")
        queue.submit("t", id="d1", depends_on=[root])
        finish(queue, root, S.DEAD_LETTER)
        queue.retry(root)
        finish(queue, root, S.DEAD_LETTER)
        assert queue.waits("d1")["blocked"] and queue.store.blocked_count() == 1

    def test_two_roots_both_must_be_repaired(self, queue):
        a, b = queue.submit("t", id="a"), queue.submit("t", id="b")
        queue.submit("t", id="c", depends_on=[a, b])
        finish(queue, a, S.DEAD_LETTER)
        finish(queue, b, S.DEAD_LETTER)
        assert queue.store.blocked_count() == 1
        queue.retry(a)
        assert queue.waits("c")["blocked_by"] == [["b", "c"]]
        queue.retry(b)
        assert queue.store.blocked_count() == 0

    def test_blocked_dependents_dead_letter_when_their_lifetime_ends(self, queue):
        root = queue.submit("t", id="root")
        queue.submit("t", id="d1", depends_on=[root], lifetime=30)
        queue.submit("t", id="d2", depends_on=["d1"], lifetime=60)
        finish(queue, root, S.FAILED)
        store, now = queue.store, time.time()
        assert store.expire_lifetimes(now=now + 10) == []
        assert [e[0] for e in store.expire_lifetimes(now=now + 31)] == ["d1"]
        info = queue.get("d1")
        assert info.state.value == "dead_letter" and info.error.category.value == "timeout"
        assert "lifetime of 30s" in info.error.message
        # d2 is now blocked by d1 (dead_letter) only; root's entry went with... d2 keeps both
        assert ["d1", "d2"] in queue.waits("d2")["blocked_by"]
        assert [e[0] for e in store.expire_lifetimes(now=now + 61)] == ["d2"]
        assert store.blocked_count() == 0

    def test_cancelling_a_blocked_job_unblocks_the_count(self, queue):
        root = queue.submit("t", id="root")
        queue.submit("t", id="d1", depends_on=[root])
        finish(queue, root, S.FAILED)
        queue.cancel("d1")
        assert queue.store.blocked_count() == 0

    @pytest.mark.lmdb_only("gq check reads the LMDB indexes")
    def test_check_is_clean_after_blocking(self, queue):
        root = queue.submit("t", id="root")
        queue.submit("t", id="d1", depends_on=[root], lifetime=5)
        queue.submit("t", id="d2", depends_on=["d1"])
        finish(queue, root, S.DEAD_LETTER)
        retried = queue.submit("t")
        finish(queue, retried, S.SCHEDULED)          # a retry waiting: counted apart
        report = queue.store.check()
        assert report.ok, report
        queue.store.expire_lifetimes(now=time.time() + 6)
        queue.retry(root)
        report = queue.store.check()
        assert report.ok, report


class TestLifetime:
    def test_every_non_terminal_state_expires(self, queue):
        sched = queue.submit("t", lifetime=10)
        delayed = queue.submit("t", lifetime=10, delay=3600)
        pend = queue.submit("t", lifetime=10, depends_on=[queue.submit("t")])
        running = queue.submit("t", lifetime=10)
        claim(queue, running)
        done = queue.submit("t", lifetime=10)
        finish(queue, done, S.COMPLETED)
        expired = queue.store.expire_lifetimes(now=time.time() + 11)
        assert {e[0] for e in expired} == {sched, delayed, pend, running}
        assert {state(queue, j) for j in (sched, delayed, pend, running)} == {"dead_letter"}
        assert state(queue, done) == "completed"
        assert queue.store.next_expiry() is None
        # a running job's late completion is refused (fencing)
        with pytest.raises(gq.GQError, match="refused"):
            queue.store.finish(running, attempt=1, owner="w", state=S.COMPLETED,
                               now=time.time(), result=b"1")

    def test_defaults_job_then_handler_then_queue(self, location):
        q = gq.Queue(location, lifetime=100)
        q.handler("typed", lifetime=50)(lambda job: None)
        a = q.submit("typed")
        b = q.submit("untyped")
        c = q.submit("typed", lifetime=7)
        (d,) = q.submit_many([{"type": "typed"}])
        assert [q.get(j).lifetime for j in (a, b, c, d)] == [50, 100, 7, 50]
        q.close()

    def test_no_lifetime_no_expiry_entry(self, queue):
        queue.submit("t")
        assert queue.store.next_expiry() is None

    def test_operator_retry_after_expiry_runs_without_lifetime(self, queue):
        j = queue.submit("t", lifetime=1)
        queue.store.expire_lifetimes(now=time.time() + 2)
        queue.retry(j)
        assert queue.store.expire_lifetimes(now=time.time() + 100) == []
        assert state(queue, j) == "scheduled"


class TestIdempotency:
    def test_key_free_again_after_completion_without_window(self, queue):
        a = queue.submit("t", key="k")
        finish(queue, a, S.COMPLETED)
        assert queue.submit("t", key="k") != a

    def test_window_after_completion(self, location):
        q = gq.Queue(location, idempotency_window=60)
        a = q.submit("t", key="k")
        finish(q, a, S.COMPLETED, now=time.time() - 30)
        assert q.submit("t", key="k") == a
        assert q.stats()["total"] == 1
        q.close()

    def test_window_has_passed(self, location):
        q = gq.Queue(location, idempotency_window=60)
        a = q.submit("t", key="k")
        finish(q, a, S.COMPLETED, now=time.time() - 61)
        assert q.submit("t", key="k") != a
        q.close()

    def test_failed_job_frees_its_key_even_inside_the_window(self, location):
        q = gq.Queue(location, idempotency_window=60)
        a = q.submit("t", key="k")
        finish(q, a, S.FAILED)
        assert q.submit("t", key="k") != a
        q.close()

    def test_bad_window(self, location):
        with pytest.raises(gq.ValidationError, match="idempotency_window"):
            gq.Queue(location, idempotency_window=-1)


class TestDepth:
    def test_hard_limit_refuses_and_persists_nothing(self, location):
        q = gq.Queue(location, max_depth=3)
        q.submit_many([{"type": "t"}] * 3)
        before = q.stats()
        with pytest.raises(gq.QueueFull, match="max_depth is 3"):
            q.submit("t", key="never", lifetime=5)
        with pytest.raises(gq.QueueFull):
            q.submit_many([{"type": "t"}])
        assert q.stats() == before
        assert q.store.next_expiry() is None
        q.close()

    def test_retries_do_not_count_against_new_submissions(self, location):
        q = gq.Queue(location, max_depth=2)
        a, b = q.submit("t"), q.submit("t")
        finish(q, a, S.SCHEDULED)          # failed attempt, retry in an hour
        finish(q, b, S.SCHEDULED)
        assert q.stats()["by_state"]["scheduled"] == 2
        c, d = q.submit("t"), q.submit("t")    # the two retries hold no room
        with pytest.raises(gq.QueueFull):
            q.submit("t")
        claim(q, c)                             # a new job starts: room for one
        q.submit("t")
        assert {state(q, j) for j in (a, b)} == {"scheduled"} and d
        q.close()

    def test_depth_warning_logs_and_sets_the_gauge(self, location, caplog):
        q = gq.Queue(location, depth_warning=2)
        with caplog.at_level(logging.WARNING, logger="gq.backpressure"):
            q.submit("t")
            q.submit("t")
            assert QUEUE_DEPTH_WARNING._value.get() == 0
            q.submit("t")
            q.submit("t")
        assert QUEUE_DEPTH_WARNING._value.get() == 1
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "Queue depth 3 exceeds depth_warning 2" in warnings[0]
        q.close()


class TestDelayed:
    def test_due_jobs_become_ready_in_due_order_then_priority_by_dispatch(self, queue):
        now = time.time()
        late = queue.submit("t", run_at=now + 20, priority=9)
        early = queue.submit("t", run_at=now + 10, priority=1)
        assert q_ready(queue) == []
        assert queue.store.next_due() == pytest.approx(now + 10, abs=1e-5)
        assert queue.store.promote_due(now=now + 15) == 1
        assert q_ready(queue) == [early]
        queue.store.promote_due(now=now + 25)
        assert q_ready(queue) == [early, late]


def test_occurrence_cursor_submits_once_and_skips_history(queue):
    from gq.runtime.periodic import PeriodicScheduler
    queue.periodic(every=60, type="r", payload={"x": 1})
    s1, s2 = PeriodicScheduler(queue), PeriodicScheduler(queue)   # two workers
    t = 6000 * 60.0
    s1.tick(t + 1)        # first sight: records the start, submits nothing
    s2.tick(t + 2)
    assert queue.stats()["total"] == 0
    s1.tick(t + 61)
    s2.tick(t + 62)
    s2.tick(t + 63)
    assert queue.stats()["total"] == 1
    # downtime of ten occurrences: only the latest runs, once
    PeriodicScheduler(queue).tick(t + 60 * 12 + 5)
    PeriodicScheduler(queue).tick(t + 60 * 12 + 6)
    jobs = queue.list(type="r")
    assert len(jobs) == 2 and jobs[1].payload == {"x": 1}
    assert jobs[1].key.endswith("T04:12:00+00:00")
    # a wall clock stepped back submits nothing again
    PeriodicScheduler(queue).tick(t + 61)
    assert queue.stats()["total"] == 2


def test_blocked_gauge_set_by_the_worker_sweep(queue):
    import asyncio

    from gq.runtime import sweeps
    sweeps._blocked_read.clear()   # count now, whatever an earlier store did
    root = queue.submit("t", id="root")
    queue.submit("t", id="d1", depends_on=[root])
    finish(queue, root, S.FAILED)
    asyncio.run(sweeps.sweep(queue))
    assert JOBS_BLOCKED._value.get() == 1


def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "gq.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_submit_run_at_lifetime_and_inspect_of_a_blocked_job(data_dir):
    import orjson
    run = _cli("submit", "t", "--data", data_dir, "--run-at", "2099-01-01T00:00:00Z",
               "--lifetime", "2h", "--id", "late")
    assert run.returncode == 0, run.stderr
    with gq.Queue(data_dir) as q:
        info = q.get("late")
        assert info.lifetime == 7200 and info.run_at == 4070908800.0
        q.submit("t", id="child", depends_on=["late"])
        q.cancel("late")
    run = _cli("inspect", "child", "--data", data_dir, "--json")
    assert run.returncode == 0, run.stderr
    shown = orjson.loads(run.stdout)
    assert shown["waiting_on"] == [{"id": "late", "state": "cancelled"}]
    assert shown["blocked"] is True and shown["blocked_by"] == [["late", "child"]]
    for bad, message in (("tomorrow", "not an ISO 8601 time"),
                         ("2099-01-01T00:00:00", "has no timezone")):
        run = _cli("submit", "t", "--data", data_dir, "--run-at", bad)
        assert run.returncode == 1 and message in run.stderr and "Traceback" not in run.stderr
    help_text = _cli("submit", "--help").stdout
    assert "--lifetime" in help_text and "--run-at" in help_text


def test_periodic_decorator_registers_handler_and_schedule(queue):
    @queue.periodic("*/5 * * * *", type="report", payload={"k": 1})
    def report(job):
        return None

    assert queue.handlers["report"].fn is report
    assert [s.name for s in queue.schedules] == ["report@*/5 * * * *"]
    with pytest.raises(gq.ValidationError, match="already registered"):
        queue.periodic("*/5 * * * *", type="report")
    queue.periodic("*/5 * * * *", type="report", name="report-2")   # told apart by name
    with pytest.raises(gq.ValidationError,
                       match=r"payload is of type set: send sorted\(payload\)"):
        queue.periodic(every=5, type="x", payload={1, 2})
