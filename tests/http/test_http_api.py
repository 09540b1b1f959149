"""The HTTP API against a real server on loopback: a worker serving `--http` on
its own event loop, a real LMDB store, a stdlib HTTP client."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

import gq
from http_harness import call
from worker_harness import wait_state, wait_until


def register(q):
    @q.handler("ok")
    async def ok(job):
        await asyncio.sleep(job.payload.get("sleep", 0) if isinstance(job.payload, dict)
                            else 0)
        return {"echo": job.payload}

    @q.handler("crash", max_attempts=1)
    async def crash(job):
        raise RuntimeError("boom")

    @q.handler("bad")
    async def bad(job):
        raise gq.PermanentError("no total")
    return q


def python_error(fn, *args, **kwargs) -> gq.GQError:
    with pytest.raises(gq.GQError) as info:
        fn(*args, **kwargs)
    return info.value


def test_submit_get_and_job_info(make_queue, serve):
    q = register(make_queue())
    api = serve(q)
    r = api("POST", "/v1/jobs", {"type": "ok", "payload": {"n": 7}, "priority": 3,
                                 "key": "k-1"})
    assert r.status == 201, r
    job_id = r.json["id"]
    job = wait_state(q, job_id, "completed")
    got = api("GET", f"/v1/jobs/{job_id}")
    assert got.status == 200 and got.json == job.as_dict()
    assert got.json["result"] == {"echo": {"n": 7}} and got.json["priority"] == 3
    # the same idempotency key while the job is unfinished gives the same id; finished: new
    again = api("POST", "/v1/jobs", {"type": "ok", "key": "k-1"})
    assert again.status == 201


def test_submit_with_delay_run_at_and_dependencies(make_queue, serve):
    q = register(make_queue())
    api = serve(q)
    first = api("POST", "/v1/jobs", {"type": "ok", "payload": {"sleep": 0.3}}).json["id"]
    later = api("POST", "/v1/jobs", {"type": "ok", "depends_on": [first]}).json["id"]
    assert q.get(later).state is gq.State.PENDING
    timed = api("POST", "/v1/jobs", {"type": "ok", "run_at": "2099-01-01T00:00:00Z"})
    assert timed.status == 201 and q.get(timed.json["id"]).run_at > 4e9
    wait_state(q, later, "completed")
    bad_time = api("POST", "/v1/jobs", {"type": "ok", "run_at": "next tuesday"})
    assert bad_time.status == 400 and "ISO 8601" in bad_time.json["message"]


def test_run_at_accepts_what_gq_submit_run_at_accepts(make_queue, serve):
    from gq.cli.common import parse_run_at

    q = register(make_queue())
    api = serve(q)
    for text in ("2099-01-01T00:00:00Z", "2099-01-01T00:00:00z", "2099-01-01T02:00:00+02:00",
                 "4070908800", "4070908800.5"):
        r = api("POST", "/v1/jobs", {"type": "ok", "run_at": text})
        assert r.status == 201, (text, r.json)
        assert q.get(r.json["id"]).run_at == parse_run_at(text) >= 4070908800.0, text
    naive = api("POST", "/v1/jobs", {"type": "ok", "run_at": "2099-01-01T00:00:00"})
    assert naive.status == 400 and naive.json["error"] == "ValidationError"
    assert "has no timezone; add Z or +HH:MM" in naive.json["message"]
    with pytest.raises(gq.ValidationError, match="has no timezone"):
        parse_run_at("2099-01-01T00:00:00")


@pytest.mark.parametrize("body, python_kwargs", [
    ({"type": "ok", "priority": 2**40}, {"priority": 2**40}),
    ({"type": "ok", "delay": -1}, {"delay": -1}),
    ({"type": "", "payload": 1}, None),
    ({"type": "ok", "depends_on": ["no-such-job"]}, {"depends_on": ["no-such-job"]}),
    ({"type": "ok", "id": "0123abcd-0123456789ab"}, {"id": "0123abcd-0123456789ab"}),
])
def test_invalid_submits_are_400_with_the_python_message(make_queue, serve, body,
                                                         python_kwargs):
    q = register(make_queue())
    api = serve(q)
    r = api("POST", "/v1/jobs", body)
    assert r.status == 400, r
    if python_kwargs is None:
        expected = python_error(q.submit, body["type"], body.get("payload"))
    else:
        expected = python_error(q.submit, "ok", **python_kwargs)
    assert r.json == {"error": type(expected).__name__, "message": str(expected)}


def test_submit_failing_validate_is_400_and_stores_nothing(make_queue, serve):
    q = register(make_queue())

    def needs_total(payload):
        if "total" not in payload:
            raise ValueError("an invoice needs a 'total'")

    q.handler("invoice", validate=needs_total)(lambda job: None)
    api = serve(q)
    before = q.stats()
    r = api("POST", "/v1/jobs", {"type": "invoice", "payload": {"lines": []}})
    assert r.status == 400, r
    assert r.json == {"error": "ValidationError",
                      "message": "the payload of a 'invoice' job failed its handler's "
                                 "validate=: ValueError: an invoice needs a 'total'; "
                                 "nothing was stored"}
    assert q.stats() == before
    assert api("POST", "/v1/jobs", {"type": "invoice", "payload": {"total": 5}}).status == 201


@pytest.mark.parametrize("raw, words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"payload": 1}', "no 'type'"),
    (b'{"type": "ok", "colour": "red"}', "unknown field(s) colour"),
])
def test_malformed_bodies_are_400(make_queue, serve, raw, words):
    api = serve(register(make_queue()))
    r = api("POST", "/v1/jobs", raw=raw)
    assert r.status == 400 and r.json["error"] == "ValidationError"
    assert words in r.json["message"], r


def test_body_limit_and_payload_limit_are_413(make_queue, serve):
    q = register(make_queue(max_payload_bytes=1000))
    api = serve(q)
    payload = "x" * 2000
    r = api("POST", "/v1/jobs", {"type": "ok", "payload": payload})
    expected = python_error(q.submit, "ok", payload)
    assert r.status == 413
    assert r.json == {"error": "PayloadTooLarge", "message": str(expected)}
    # past the request-body limit (2 x max_payload_bytes + 64 KiB) aiohttp stops reading
    huge = api("POST", "/v1/jobs", {"type": "ok", "payload": "y" * 200_000})
    assert huge.status == 413 and huge.json["error"] == "PayloadTooLarge"
    assert "request body is over the limit" in huge.json["message"]
    assert q.stats()["total"] == 0     # nothing of either was stored


def test_queue_full_is_429(make_queue, serve):
    q = register(make_queue(max_depth=2))
    q.pause("ok")                     # keep them waiting
    api = serve(q)
    for _ in range(2):
        assert api("POST", "/v1/jobs", {"type": "ok"}).status == 201
    r = api("POST", "/v1/jobs", {"type": "ok"})
    expected = python_error(q.submit, "ok")
    assert r.status == 429 and r.json == {"error": "QueueFull", "message": str(expected)}


def test_unknown_job_is_404(make_queue, serve):
    api = serve(register(make_queue()))
    for method, path in (("GET", "/v1/jobs/nope"), ("POST", "/v1/jobs/nope/cancel"),
                         ("POST", "/v1/jobs/nope/retry")):
        r = api(method, path)
        assert r.status == 404, (method, path, r)
        assert r.json == {"error": "JobNotFound", "message": str(gq.JobNotFound("nope"))}


def test_cancel_retry_and_their_conflicts(make_queue, serve):
    q = register(make_queue())
    q.pause("ok")
    api = serve(q)
    waiting = api("POST", "/v1/jobs", {"type": "ok"}).json["id"]
    r = api("POST", f"/v1/jobs/{waiting}/cancel")
    assert r.status == 200 and r.json["state"] == "cancelled"
    again = api("POST", f"/v1/jobs/{waiting}/cancel")
    expected = python_error(q.cancel, waiting)
    assert again.status == 409
    assert again.json == {"error": "InvalidTransition", "message": str(expected)}

    failed = api("POST", "/v1/jobs", {"type": "bad"}).json["id"]
    dead = api("POST", "/v1/jobs", {"type": "crash"}).json["id"]
    wait_state(q, failed, "failed")
    wait_state(q, dead, "dead_letter")
    r = api("POST", f"/v1/jobs/{failed}/retry")
    assert r.status == 409 and r.json == {"error": "NotRetriable",
                                          "message": str(gq.NotRetriable(failed))}
    q.pause("crash")
    r = api("POST", f"/v1/jobs/{dead}/retry")
    assert r.status == 200 and r.json["state"] == "scheduled" and r.json["attempts"] == 0
    r = api("POST", f"/v1/jobs/{dead}/retry")
    assert r.status == 409 and r.json["error"] == "InvalidTransition"


def test_stats_lists_failures_blocked_and_pauses(make_queue, serve):
    q = register(make_queue())
    api = serve(q)
    done = api("POST", "/v1/jobs", {"type": "ok"}).json["id"]
    dead = api("POST", "/v1/jobs", {"type": "crash"}).json["id"]
    wait_state(q, done, "completed")
    wait_state(q, dead, "dead_letter")
    cancelled = q.submit("ok", delay=3600)
    q.cancel(cancelled)
    child = q.submit("ok", depends_on=[q.submit("ok", depends_on=[cancelled])])

    stats = api("GET", "/v1/stats")
    assert stats.status == 200 and stats.json == q.stats()
    listed = api("GET", "/v1/jobs?state=dead_letter").json
    assert [j["id"] for j in listed] == [dead]
    assert api("GET", "/v1/jobs?state=sideways").status == 400
    assert api("GET", "/v1/jobs?limit=many").status == 400
    assert len(api("GET", "/v1/jobs?limit=2").json) == 2

    failures = api("GET", "/v1/failures").json
    assert [(f["id"], f["error"]["category"]) for f in failures] == [(dead, "system")]
    assert failures[0]["error"]["message"] == "RuntimeError: boom"

    blocked = {b["id"]: b for b in api("GET", "/v1/blocked").json}
    assert blocked[child]["chain"][-1] == cancelled
    assert blocked[child]["blocker"]["state"] == "cancelled"
    assert blocked[child]["satisfiable"] is False
    assert [w["state"] for w in blocked[child]["waiting_on"]] == ["pending"]
    assert blocked[child]["blocked"] is True and blocked[child]["blocked_by"]
    n_blocked = q.store.blocked_count()
    assert n_blocked >= 2                       # both jobs below the cancelled one
    assert f"gq_jobs_blocked {float(n_blocked)}" in api("GET", "/metrics").body.decode()

    assert api("POST", "/v1/types/ok/pause").json == {"paused": ["ok"]}
    assert q.paused() == {"ok"}
    assert api("POST", "/v1/types/ok/resume").json == {"paused": []}


def test_token_guards_v1_only_and_is_checked_exactly(make_queue, serve):
    q = register(make_queue())
    api = serve(q, http_token="s3cret")
    assert api("GET", "/v1/stats").status == 401
    assert api("GET", "/v1/stats", token="s3cre").status == 401
    assert api("GET", "/v1/stats", token="s3cret-and-more").status == 401
    assert api("GET", "/v1/stats", headers={"Authorization": "Basic s3cret"}).status == 401
    r = api("POST", "/v1/jobs", {"type": "ok"})
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json["error"] == "Unauthorized"
    assert q.stats()["total"] == 0
    assert api("POST", "/v1/jobs", {"type": "ok"}, token="s3cret").status == 201
    assert api("GET", "/v1/stats", token="s3cret").status == 200
    for open_path in ("/healthz", "/readyz", "/metrics", "/"):
        assert api("GET", open_path).status == 200, open_path


def test_token_from_the_environment(make_queue, serve, monkeypatch):
    monkeypatch.setenv("GQ_TOKEN", "from-env")
    api = serve(register(make_queue()))
    assert api("GET", "/v1/stats").status == 401
    assert api("GET", "/v1/stats", token="from-env").status == 200


@pytest.fixture
def faults(monkeypatch):
    """Storage faults where the store meets LMDB (the circuit breaker tests' real
    environment whose write commits fail with an I/O error, as planned)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from test_circuit_breaker import FaultPlan, FaultyEnv

    from gq.store.lmdb import store as lmdb_store

    plan = FaultPlan()
    real_open = lmdb_store.open_env
    monkeypatch.setattr(lmdb_store, "open_env",
                        lambda path, map_size: FaultyEnv(real_open(path, map_size), plan))
    return plan


def test_readiness_flips_with_a_store_fault(data_dir, serve, faults):
    q = register(gq.Queue(data_dir, circuit_threshold=3, circuit_cooldown=0.3))
    try:
        api = serve(q)
        assert api("GET", "/readyz").status == 200
        faults.fail_next = 1_000                      # the disk starts failing
        for _ in range(3):
            r = api("POST", "/v1/jobs", {"type": "ok"})
            assert r.status == 503 and r.json["error"] == "PersistenceError", r
            assert "Input/output error" in r.json["message"]
        refused = api("POST", "/v1/jobs", {"type": "ok"})
        assert refused.status == 503 and refused.json["error"] == "StoreUnavailable"
        assert "circuit open" in refused.json["message"]
        r = api("GET", "/readyz")
        assert r.status == 503 and r.json["status"] == "not ready" and r.json["reason"]
        assert api("GET", "/healthz").status == 200       # alive, just not ready
        metrics = api("GET", "/metrics").body.decode()
        assert "gq_circuit_open 1.0" in metrics

        faults.fail_next = 0                          # the fault is gone: a probe closes it
        wait_until(lambda: api("GET", "/readyz").status == 200, 10,
                   what="/readyz back to 200 after the cool-down's probe")
        assert api("POST", "/v1/jobs", {"type": "ok"}).status == 201
        assert "gq_circuit_open 0.0" in api("GET", "/metrics").body.decode()
        api.worker.stop(timeout=15)
    finally:
        q.close()


def test_not_ready_while_draining(make_queue, serve):
    q = register(make_queue())
    api = serve(q, shutdown_timeout=10)
    job_id = q.submit("ok", {"sleep": 1.5})
    wait_state(q, job_id, "running")
    api.worker.worker.stop()
    r = wait_until(lambda: (lambda r: r if r.status == 503 else None)(api("GET", "/readyz")),
                   5, what="/readyz to turn 503 during the drain")
    assert "shutting down" in r.json["reason"]
    api.worker.stop(timeout=15)
    assert q.get(job_id).state is gq.State.COMPLETED


def test_a_taken_port_is_one_clear_error(make_queue, serve):
    q = register(make_queue())
    api = serve(q)
    port = api.base.rsplit(":", 1)[1]
    other = gq.Worker(q, http=f"127.0.0.1:{port}")
    with pytest.raises(gq.GQError, match=f"cannot serve HTTP on 127.0.0.1:{port}"):
        asyncio.run(other.serve())
    with pytest.raises(gq.ValidationError, match="HOST:PORT"):
        gq.Worker(q, http="localhost:http")


def test_submits_from_many_clients_at_once(make_queue, serve):
    q = register(make_queue())
    q.pause("ok")
    api = serve(q)
    ids, errors = [], []

    def client():
        for _ in range(25):
            r = call(api.base, "POST", "/v1/jobs", {"type": "ok"})
            (ids if r.status == 201 else errors).append(r)
    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.json["id"] for r in ids}) == 200 == q.stats()["by_state"]["scheduled"]


def test_the_api_on_each_store_backend(location, serve):
    """The HTTP surface only speaks to gq.Queue: the same on LMDB and PostgreSQL."""
    q = register(gq.Queue(location))
    try:
        api = serve(q)
        job_id = api("POST", "/v1/jobs", {"type": "ok", "payload": {"n": 1}}).json["id"]
        dead = api("POST", "/v1/jobs", {"type": "crash"}).json["id"]
        wait_state(q, job_id, "completed")
        wait_state(q, dead, "dead_letter")
        assert api("GET", f"/v1/jobs/{job_id}").json["result"] == {"echo": {"n": 1}}
        assert api("GET", "/v1/stats").json == q.stats()
        assert [j["id"] for j in api("GET", "/v1/failures").json] == [dead]
        q.pause("crash")
        assert api("POST", f"/v1/jobs/{dead}/retry").json["state"] == "scheduled"
        assert api("GET", "/readyz").status == 200
        metrics = api("GET", "/metrics").body.decode()
        assert 'gq_queue_pending{state="completed"} 1.0' in metrics
        api.worker.stop(timeout=15)
    finally:
        q.close()


def test_result_waits_for_the_job_to_end(make_queue, serve):
    q = register(make_queue())
    api = serve(q)
    job = api("POST", "/v1/jobs", {"type": "ok", "payload": {"sleep": 0.3}}).json["id"]
    got = api("GET", f"/v1/jobs/{job}/result?timeout=30")
    assert got.status == 200 and got.json["state"] == "completed"
    assert got.json["result"] == {"echo": {"sleep": 0.3}}
    bad = api("POST", "/v1/jobs", {"type": "bad"}).json["id"]
    got = api("GET", f"/v1/jobs/{bad}/result?timeout=30")
    assert got.status == 200 and got.json["state"] == "failed"
    assert got.json["error"]["message"] == "PermanentError: no total"
    later = api("POST", "/v1/jobs", {"type": "ok", "delay": 3600}).json["id"]
    got = api("GET", f"/v1/jobs/{later}/result?timeout=0.1")
    assert got.status == 202 and got.json["state"] == "scheduled"
    assert api("GET", "/v1/jobs/nope/result?timeout=1").status == 404
    for text, words in (("abc", "timeout 'abc' is not a number of seconds"),
                        ("61", "timeout 61 is out of range 0..60 seconds")):
        got = api("GET", f"/v1/jobs/{later}/result?timeout={text}")
        assert got.status == 400 and words in got.json["message"], got.json
