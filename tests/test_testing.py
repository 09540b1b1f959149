"""gq.testing: helpers for users' own test suites, on a real temporary store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest

import gq
from gq.testing import (DrainTimeout, adrain, assert_submitted, drain, inline, jobs_of_type,
                        last_error, refute_submitted, temporary_queue)


def make_app_queue(tmp_path):
    """An application's queue with its handlers, as users define it."""
    app = gq.Queue(str(tmp_path / "app-data"))
    seen = []

    @app.handler("email.send")
    async def send(job):
        seen.append(("email.send", job.payload["to"]))
        return {"sent": job.payload["to"]}

    @app.handler("report.build")
    def build(job):                         # sync handlers run too
        seen.append(("report.build", job.payload))
        return job.payload * 2

    @app.handler("flaky", max_attempts=3, backoff_base=30)
    async def flaky(job):
        if job.attempt < 3:
            raise gq.TemporaryError(f"try again (attempt {job.attempt})")
        return "finally"

    @app.handler("broken")
    async def broken(job):
        raise gq.PermanentError("bad payload: no 'to'")

    return app, seen


def test_temporary_queue_is_real_and_removed(tmp_path):
    app, _ = make_app_queue(tmp_path)
    with temporary_queue(handlers_from=app) as q:
        path = q.path
        assert os.path.exists(os.path.join(path, "data.mdb"))
        assert set(q.handlers) == set(app.handlers) and q.path != app.path
        q.submit("email.send", {"to": "a@example.com"})
    assert not os.path.exists(path)
    assert app.stats()["total"] == 0          # the app's own store was never touched
    app.close()


def test_drain_runs_until_nothing_is_runnable(tmp_path):
    app, seen = make_app_queue(tmp_path)
    with temporary_queue(handlers_from=app) as q:
        first = q.submit("report.build", 1, id="first")
        q.submit("report.build", 2, id="second", depends_on=[first])
        q.submit("report.build", 3, id="third", depends_on=["second"])
        for i in range(20):
            q.submit("email.send", {"to": f"u{i}@example.com"}, priority=i % 3)
        q.submit("email.send", {"to": "later@example.com"}, delay=3600, id="later")
        q.submit("unhandled.type", {}, id="nobody")
        result = drain(q)
        assert result.completed == 23 and result.succeeded and result.attempts == 23
        chain = [q.get(i) for i in ("first", "second", "third")]
        assert [j.result for j in chain] == [2, 4, 6]
        assert chain[0].finished_at <= chain[1].started_at <= chain[1].finished_at \
            <= chain[2].started_at
        assert q.get("later").state is gq.State.SCHEDULED     # delayed: not yet
        assert q.get("nobody").state is gq.State.SCHEDULED    # no handler here
        assert drain(q) == type(result)()                     # nothing left: a no-op
        assert drain(q, include_delayed=True).completed == 1
        assert q.get("later").state is gq.State.COMPLETED
    app.close()


def test_failures_retries_and_last_error(tmp_path):
    app, _ = make_app_queue(tmp_path)
    with temporary_queue(handlers_from=app) as q:
        flaky = q.submit("flaky", {})
        broken = q.submit("broken", {})
        result = drain(q)
        assert result.failed == 1 and not result.succeeded
        # the retry waits out its 30 s back-off: still scheduled, with its error
        assert q.get(flaky).state is gq.State.SCHEDULED
        error = last_error(q, flaky)
        assert error.category is gq.Category.TEMPORARY
        assert error.message == "TemporaryError: try again (attempt 1)"
        assert last_error(q, broken).category is gq.Category.PERMANENT
        assert "bad payload" in last_error(q, broken).message
        # include_delayed runs the back-offs at once: attempts 2 and 3
        assert drain(q, include_delayed=True).completed == 1
        job = q.get(flaky)
        assert (job.state, job.attempts, job.result) == (gq.State.COMPLETED, 3, "finally")
        assert last_error(q, flaky) is None
    app.close()


def test_snoozes_and_results_under_drain():
    with temporary_queue() as q:
        @q.handler("poll", max_attempts=1)
        def poll(job):
            if job.attempt < 3:
                raise gq.Snooze(3600)
            return "ready"
        job = q.submit("poll")
        drain(q)                      # snoozed for an hour: left scheduled
        assert q.get(job).state is gq.State.SCHEDULED
        with pytest.raises(TimeoutError):
            q.result(job, timeout=0)
        drain(q, include_delayed=True)   # snoozes run out at once, as back-offs do
        assert q.result(job, timeout=0) == "ready"
        assert (q.get(job).attempts, q.get(job).max_attempts) == (3, 3)


def test_paused_types_are_left_alone():
    with temporary_queue() as q:
        @q.handler("t")
        def t(job):
            return 1
        q.submit("t", id="a")
        q.pause("t")
        assert drain(q).completed == 0 and q.get("a").state is gq.State.SCHEDULED
        q.resume("t")
        assert drain(q).completed == 1


def test_a_hanging_handler_times_the_drain_out():
    with temporary_queue() as q:
        @q.handler("hang")
        async def hang(job):
            await asyncio.sleep(3600)
        q.submit("hang", id="h")
        started = time.monotonic()
        with pytest.raises(DrainTimeout, match=r"still running: h \(hang\)"):
            drain(q, timeout=0.5)
        assert time.monotonic() - started < 30


def test_drain_without_handlers_says_so():
    with temporary_queue() as q:
        with pytest.raises(gq.ValidationError, match="no handlers to drain with"):
            drain(q)


def test_adrain_and_drain_inside_a_running_loop():
    with temporary_queue() as q:
        @q.handler("t")
        async def t(job):
            return job.payload + 1

        async def a_test():
            jid = await q.asubmit("t", 1)
            assert (await adrain(q)).completed == 1
            other = q.submit("t", 10)
            assert drain(q).completed == 1      # sync call from async code: a helper thread
            return q.get(jid).result, q.get(other).result
        assert asyncio.run(a_test()) == (2, 11)


def test_inline_runs_each_submit_before_it_returns():
    with temporary_queue() as q:
        @q.handler("order.placed")
        def placed(job):
            q.submit("email.send", {"order": job.payload["order"]}, id="mail")
            q.submit("audit.log", {"order": job.payload["order"]}, delay=60)
            return "ok"

        @q.handler("email.send")
        async def send(job):
            await q.asubmit("stats.bump", {})
            return "sent"

        @q.handler("audit.log")
        async def audit(job):
            return "logged"

        @q.handler("stats.bump")
        def bump(job):
            return "bumped"

        with inline(q):
            jid = q.submit("order.placed", {"order": 7})
            # the handler ran, and what it submitted ran in the same drain,
            # the delayed audit job included
            assert q.get(jid).result == "ok" and q.get("mail").result == "sent"
            assert assert_submitted(q, "audit.log", state="completed", count=1)
            assert assert_submitted(q, "stats.bump", state="completed", count=1)
            ids = q.submit_many([{"type": "stats.bump"}, {"type": "stats.bump"}])
            assert all(q.get(i).state is gq.State.COMPLETED for i in ids)

            async def from_async():
                return await q.asubmit("stats.bump", {})
            assert q.get(asyncio.run(from_async())).state is gq.State.COMPLETED
        # outside the block submit only stores again
        later = q.submit("stats.bump", {})
        assert q.get(later).state is gq.State.SCHEDULED
        assert "submit" not in vars(q)


def test_inline_without_delayed():
    with temporary_queue() as q:
        @q.handler("t")
        def t(job):
            return 1
        with inline(q, include_delayed=False):
            now = q.submit("t")
            later = q.submit("t", delay=3600)
        assert q.get(now).state is gq.State.COMPLETED
        assert q.get(later).state is gq.State.SCHEDULED


def test_assert_submitted_and_refute_submitted():
    with temporary_queue() as q:
        q.submit("email.send", {"to": "a@example.com", "template": {"name": "welcome",
                                                                    "lang": "en"}},
                 priority=5, key="welcome:a")
        q.submit("email.send", {"to": "b@example.com", "template": {"name": "reset"}})
        q.submit("sms.send", {"to": "+100"})
        assert len(assert_submitted(q, "email.send")) == 2
        jobs = assert_submitted(q, "email.send", payload={"template": {"name": "welcome"}},
                                count=1)
        assert jobs[0].payload["to"] == "a@example.com"
        assert_submitted(q, "email.send", priority=5, key="welcome:a", state="scheduled")
        assert_submitted(q, "email.send", count=2, state=gq.State.SCHEDULED)
        refute_submitted(q, "email.send", payload={"to": "c@example.com"})
        refute_submitted(q, "push.send")
        with pytest.raises(AssertionError) as failure:
            assert_submitted(q, "email.send", payload={"to": "c@example.com"})
        message = str(failure.value)
        assert "expected at least one 'email.send' job(s) with payload=" in message
        assert "found 0" in message and "b@example.com" in message
        with pytest.raises(AssertionError, match="expected exactly 3 'email.send'"):
            assert_submitted(q, "email.send", count=3)
        with pytest.raises(AssertionError, match="No 'push.send' jobs at all; stored "
                           "types: email.send, sms.send"):
            assert_submitted(q, "push.send")
        with pytest.raises(AssertionError, match="expected no matching 'sms.send' job"):
            refute_submitted(q, "sms.send", payload={"to": "+100"})


def test_jobs_of_type_is_not_capped():
    with temporary_queue() as q:
        q.submit_many([{"type": "t", "payload": i} for i in range(250)])
        assert [j.payload for j in jobs_of_type(q, "t")] == list(range(250))
        assert jobs_of_type(q, "t", state="completed") == []


def test_pytest_plugin_fixture(tmp_path):
    """The `gq_queue` fixture, as a user's test suite sees it: pytest finds the
    plugin through its entry point, with no conftest."""
    (tmp_path / "myapp.py").write_text(textwrap.dedent("""
        import gq
        queue = gq.Queue("./never-used-in-tests")

        @queue.handler("email.send")
        def send(job):
            return "sent to " + job.payload["to"]

        def signup(q, address):
            return q.submit("email.send", {"to": address})
    """))
    (tmp_path / "test_user_code.py").write_text(textwrap.dedent("""
        import os
        import pytest
        import myapp
        from gq.testing import assert_submitted, drain

        @pytest.mark.gq_queue(handlers_from=myapp.queue)
        def test_signup(gq_queue):
            myapp.signup(gq_queue, "a@example.com")
            assert_submitted(gq_queue, "email.send", payload={"to": "a@example.com"})
            assert drain(gq_queue).completed == 1

        @pytest.mark.gq_queue(handlers_from=myapp.queue, inline=True)
        def test_signup_inline(gq_queue):
            jid = myapp.signup(gq_queue, "b@example.com")
            assert gq_queue.get(jid).result == "sent to b@example.com"

        def test_plain_fixture(gq_queue):
            assert gq_queue.handlers == {} and os.path.isdir(gq_queue.path)
    """))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "test_user_code.py"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout


def test_drain_from_inside_a_handler_is_refused():
    with temporary_queue() as q:
        @q.handler("outer")
        def outer(job):
            drain(q)

        jid = q.submit("outer")
        assert drain(q, timeout=30).failed == 0
        error = last_error(q, jid)
        assert error.category is gq.Category.SYSTEM
        assert "already being drained" in error.message
