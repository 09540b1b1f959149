"""Every failure category end to end, for sync and async handlers, on asyncio and
uvloop: what is stored (state, attempts, error category/message/traceback) after
an in-process worker ran the job against a real LMDB store.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import gq
from gq.errors import PermanentError, TemporaryError
from worker_harness import wait_state, wait_until

FAST_RETRY = dict(backoff_base=0.01, backoff_cap=0.02)


@pytest.fixture(params=["async", "sync"])
def kind(request):
    return request.param


def register(q, kind, job_type, body, **options):
    """Register `body(job)` as an async or a sync handler of `job_type`."""
    if kind == "async":
        async def handler(job):
            return body(job)
    else:
        def handler(job):
            return body(job)
    q.handler(job_type, **options)(handler)


def explode_with_a_bug(job):
    raise ValueError(f"boom in attempt {job.attempt}")


def test_success_stores_result(make_queue, start_worker, kind):
    q = make_queue()
    register(q, kind, "ok", lambda job: {"echo": job.payload, "attempt": job.attempt})
    start_worker(q)
    jid = q.submit("ok", {"x": [1, 2]})
    job = wait_state(q, jid, "completed")
    assert job.attempts == 1
    assert job.result == {"echo": {"x": [1, 2]}, "attempt": 1}
    assert job.error is None
    assert job.started_at is not None and job.finished_at >= job.started_at


def test_temporary_then_success_on_attempt_3(make_queue, start_worker, kind):
    q = make_queue(**FAST_RETRY)
    seen = []

    def flaky(job):
        seen.append(job.attempt)
        if job.attempt < 3:
            raise TemporaryError(f"upstream 503 on attempt {job.attempt}")
        return "third time lucky"
    register(q, kind, "flaky", flaky)
    start_worker(q)
    jid = q.submit("flaky")
    job = wait_state(q, jid, "completed")
    assert seen == [1, 2, 3]
    assert job.attempts == 3
    assert job.result == "third time lucky"


def test_temporary_error_is_visible_between_attempts(make_queue, start_worker, kind):
    q = make_queue(**FAST_RETRY)
    between = {}

    def flaky(job):
        if job.attempt == 1:
            raise TemporaryError("connection reset")
        between["job"] = q.get(job.id)   # attempt 2 runs: attempt 1's error is stored
        return None
    register(q, kind, "flaky", flaky)
    start_worker(q)
    jid = q.submit("flaky")
    wait_state(q, jid, "completed")
    seen = between["job"]
    assert seen.state is gq.State.RUNNING and seen.attempts == 2
    assert seen.error.category is gq.Category.TEMPORARY
    assert seen.error.message == "TemporaryError: connection reset"
    assert seen.error.traceback is None
    assert seen.error.attempt == 1


def test_temporary_exhausted_goes_to_dead_letter(make_queue, start_worker, kind):
    q = make_queue(**FAST_RETRY)

    def always_down(job):
        raise TemporaryError(f"still down ({job.attempt})")
    register(q, kind, "down", always_down, max_attempts=3)
    start_worker(q)
    jid = q.submit("down")
    job = wait_state(q, jid, "dead_letter")
    assert job.attempts == 3
    assert job.error.category is gq.Category.TEMPORARY
    assert job.error.message == "TemporaryError: still down (3)"
    assert job.error.attempt == 3
    assert job.finished_at is not None


def test_permanent_error_fails_after_one_attempt(make_queue, start_worker, kind):
    q = make_queue(**FAST_RETRY)
    calls = []

    def reject(job):
        calls.append(job.attempt)
        raise PermanentError("unknown customer 42")
    register(q, kind, "reject", reject, max_attempts=5)
    start_worker(q)
    jid = q.submit("reject", {"customer": 42})
    job = wait_state(q, jid, "failed")
    assert calls == [1]
    assert job.attempts == 1
    assert job.error.category is gq.Category.PERMANENT
    assert job.error.message == "PermanentError: unknown customer 42"
    assert job.error.traceback is None
    with pytest.raises(gq.NotRetriable):
        q.retry(jid)


def test_system_error_retried_then_dead_letter_with_traceback(make_queue, start_worker,
                                                               kind):
    q = make_queue(**FAST_RETRY)
    calls = []

    def buggy(job):
        calls.append(job.attempt)
        explode_with_a_bug(job)
    register(q, kind, "buggy", buggy, max_attempts=3)
    start_worker(q)
    jid = q.submit("buggy")
    job = wait_state(q, jid, "dead_letter")
    assert calls == [1, 2, 3]
    assert job.attempts == 3
    err = job.error
    assert err.category is gq.Category.SYSTEM
    assert err.message == "ValueError: boom in attempt 3"
    assert err.traceback.startswith("Traceback (most recent call last):")
    assert "explode_with_a_bug" in err.traceback
    assert err.traceback.rstrip().endswith("ValueError: boom in attempt 3")
    # the operator may send a dead-lettered job back; it runs again from attempt 1
    assert q.retry(jid).state is gq.State.SCHEDULED
    job = wait_state(q, jid, "dead_letter")
    assert calls == [1, 2, 3, 1, 2, 3]


def test_system_error_not_retried_when_disabled(make_queue, start_worker, kind):
    q = make_queue(**FAST_RETRY)
    calls = []

    def buggy(job):
        calls.append(job.attempt)
        return {}["missing"]
    register(q, kind, "buggy", buggy, max_attempts=5, retry_system_errors=False)
    start_worker(q)
    jid = q.submit("buggy")
    job = wait_state(q, jid, "dead_letter")
    assert calls == [1]
    assert job.attempts == 1
    assert job.error.category is gq.Category.SYSTEM
    assert job.error.message == "KeyError: 'missing'"
    assert "KeyError: 'missing'" in job.error.traceback


def test_failing_validate_fails_permanently_without_calling_handler(make_queue,
                                                                   start_worker, kind):
    q = make_queue(**FAST_RETRY)
    calls = []

    def check(payload):
        if "to" not in payload:
            raise ValueError("payload needs 'to'")

    register(q, kind, "email", lambda job: calls.append(job.payload), validate=check,
             max_attempts=5)
    with pytest.raises(gq.ValidationError, match="payload needs 'to'"):
        q.submit("email", {"subject": "hi"})    # refused here: this process has the handler
    producer = make_queue()                      # a process with no handlers stores it
    start_worker(q)
    bad = producer.submit("email", {"subject": "hi"})
    good = producer.submit("email", {"to": "a@example.com"})
    job = wait_state(q, bad, "failed")
    assert job.attempts == 1
    assert job.error.category is gq.Category.PERMANENT
    assert job.error.message == "validation failed: ValueError: payload needs 'to'"
    wait_state(q, good, "completed")
    assert calls == [{"to": "a@example.com"}]


def test_unserialisable_result_fails_permanently(make_queue, start_worker, kind):
    q = make_queue(**FAST_RETRY)
    calls = []

    def returns_a_set(job):
        calls.append(job.attempt)
        return {"tags": {"a", "b"}}
    register(q, kind, "setty", returns_a_set, max_attempts=5)
    start_worker(q)
    jid = q.submit("setty")
    job = wait_state(q, jid, "failed")
    assert calls == [1]
    assert job.attempts == 1
    assert job.result is None
    assert job.error.category is gq.Category.PERMANENT
    assert job.error.message == ("the handler's result is not plain JSON: "
                                 'result["tags"] is of type set: send sorted(result["tags"]) '
                                 'or list(result["tags"])')


@pytest.mark.parametrize("result,words", [
    ({"ratio": float("nan")}, 'result["ratio"] is nan, which JSON cannot hold (it would be '
                              'stored as null): send None, or a string such as "nan"'),
    ([1, (2, 3)], "result[1] is of type tuple: send list(result[1]) (a tuple would come "
                  "back as a list)"),
])
def test_a_result_json_would_change_fails_the_job_instead(make_queue, start_worker, kind,
                                                         result, words):
    """Stored changed (NaN as null, a tuple as a list) is worse than not stored."""
    q = make_queue(**FAST_RETRY)
    register(q, kind, "calc", lambda job: result, max_attempts=5)
    start_worker(q)
    job = wait_state(q, q.submit("calc"), "failed")
    assert job.attempts == 1 and job.result is None
    assert job.error.category is gq.Category.PERMANENT
    assert job.error.message == f"the handler's result is not plain JSON: {words}"


def test_timeout_then_success(make_queue, start_worker, kind):
    """A timed-out attempt is category `timeout` and retried if attempts remain."""
    q = make_queue(**FAST_RETRY)
    release = threading.Event()
    between = {}
    if kind == "async":
        async def slow_first(job):
            if job.attempt == 1:
                await asyncio.sleep(60)
            between["job"] = q.get(job.id)
            return job.attempt
    else:
        def slow_first(job):
            if job.attempt == 1:
                release.wait(60)     # blocks its thread; the worker abandons it
            between["job"] = q.get(job.id)
            return job.attempt
    q.handler("slow", timeout=0.3, max_attempts=2)(slow_first)
    start_worker(q)
    try:
        jid = q.submit("slow")
        job = wait_state(q, jid, "completed")
    finally:
        release.set()
    assert job.attempts == 2 and job.result == 2
    err = between["job"].error
    assert err.category is gq.Category.TIMEOUT
    assert err.message == "execution timeout after 0.3s; handler cancelled"
    assert err.attempt == 1


def test_job_timeout_overrides_handler_timeout(make_queue, start_worker, kind):
    q = make_queue(**FAST_RETRY)
    release = threading.Event()
    if kind == "async":
        async def slow(job):
            await asyncio.sleep(60)
    else:
        def slow(job):
            release.wait(60)
    q.handler("slow", timeout=60, max_attempts=1)(slow)
    start_worker(q)
    try:
        jid = q.submit("slow", timeout=0.2)
        job = wait_state(q, jid, "dead_letter")
    finally:
        release.set()
    assert job.error.category is gq.Category.TIMEOUT
    assert job.error.message == "execution timeout after 0.2s; handler cancelled"
    assert 0.2 <= job.finished_at - job.started_at < 5


def test_many_failures_do_not_hurt_the_worker(make_queue, start_worker, kind):
    """Handler "panics" are contained: the worker keeps serving (playbook 11)."""
    q = make_queue(**FAST_RETRY)
    register(q, kind, "buggy", explode_with_a_bug, max_attempts=1)
    register(q, kind, "ok", lambda job: job.payload)
    w = start_worker(q)
    bad = q.submit_many([{"type": "buggy"} for _ in range(30)])
    good = q.submit_many([{"type": "ok", "payload": i} for i in range(30)])
    for job in [wait_state(q, j, "dead_letter") for j in bad]:
        assert job.error.category is gq.Category.SYSTEM
    assert [wait_state(q, j, "completed").result for j in good] == list(range(30))
    # outcomes recorded by this worker (counted once their commit has returned)
    wait_until(lambda: not w.worker._running, 5, what="the worker to let go of all")
    assert w.worker.completed == 60
