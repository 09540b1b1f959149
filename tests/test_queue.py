"""The Queue API on a real store: happy paths and every kind of bad input.

Rule under test: bad input gets a GQError that names the problem, and nothing
already accepted is lost or changed.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest

import gq


def snapshot(q):
    return q.stats(), [(j.id, j.state, j.payload) for j in q.list(limit=10_000)]


class TestHappyPath:
    def test_submit_get(self, queue):
        jid = queue.submit("email.send", {"to": "a@example.com"}, priority=5)
        job = queue.get(jid)
        assert job.state is gq.State.SCHEDULED
        assert job.payload == {"to": "a@example.com"}
        assert (job.type, job.priority, job.attempts) == ("email.send", 5, 0)
        assert job.created_at > 0 and job.run_at is None
        assert job.as_dict()["state"] == "scheduled"

    def test_caller_chosen_id_and_run_at(self, queue):
        at = datetime.now(timezone.utc) + timedelta(hours=1)
        assert queue.submit("report.build", {}, id="report-7", run_at=at) == "report-7"
        assert queue.get("report-7").run_at == pytest.approx(at.timestamp())

    def test_stats_and_list(self, queue):
        queue.submit("a", 1)
        queue.submit("a", 2)
        queue.submit("b", 3, delay=60)
        stats = queue.stats()
        assert stats["total"] == 3
        assert stats["by_state"]["scheduled"] == 3
        assert stats["by_type"] == {"a": {"scheduled": 2}, "b": {"scheduled": 1}}
        assert [j.payload for j in queue.list(type="a")] == [1, 2]
        assert len(queue.list(state="scheduled")) == 3

    def test_cancel_and_retry_rules(self, queue):
        jid = queue.submit("a")
        assert queue.cancel(jid).state is gq.State.CANCELLED
        with pytest.raises(gq.InvalidTransition, match="cannot be cancelled: it is already "
                           "cancelled"):
            queue.cancel(jid)
        with pytest.raises(gq.InvalidTransition):
            queue.retry(jid)

    def test_pause_resume(self, queue):
        queue.pause("email.send")
        assert queue.paused() == {"email.send"}
        assert queue.stats()["paused"] == ["email.send"]
        queue.resume("email.send")
        assert queue.paused() == frozenset()

    def test_submit_many_with_internal_dependencies(self, queue):
        ids = queue.submit_many([
            {"type": "build", "id": "b1"},
            {"type": "test", "id": "t1", "depends_on": ["b1"]},
            {"type": "deploy", "depends_on": ["t1"], "priority": 9},
        ])
        assert [queue.get(i).state for i in ids] == [
            gq.State.SCHEDULED, gq.State.PENDING, gq.State.PENDING]

    def test_asubmit(self, queue):
        async def main():
            return await asyncio.gather(*(queue.asubmit("a", {"i": i}) for i in range(64)))
        ids = asyncio.run(main())
        assert sorted(queue.get(i).payload["i"] for i in ids) == list(range(64))

    def test_many_threads(self, queue):
        ids, lock = [], threading.Lock()

        def work(t):
            for i in range(50):
                jid = queue.submit("a", [t, i])
                with lock:
                    ids.append(jid)
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 400
        seqs = [queue.get(i).seq for i in ids]
        assert len(set(seqs)) == 400

    def test_two_queues_on_one_path_share_the_store(self, data_dir):
        a, b = gq.Queue(data_dir), gq.Queue(data_dir)
        jid = a.submit("x")
        a.close()
        assert b.get(jid).type == "x"   # closing one did not close the other
        b.close()


BAD_SUBMITS = [
    (dict(type="a", payload={1, 2}), gq.ValidationError,
     r"payload is of type set: send sorted\(payload\) or list\(payload\)"),
    (dict(type="a", payload={1: "x"}), gq.ValidationError,
     "payload has the key 1 .*JSON keys are plain strings"),
    (dict(type="a", payload=2**70), gq.ValidationError, "beyond the 64-bit integers"),
    (dict(type="a", payload="x" * (1 << 20)), gq.PayloadTooLarge, "limit is 1,048,576"),
    (dict(type=""), gq.ValidationError, "must not be empty"),
    (dict(type=5), gq.ValidationError, "job type must be a string"),
    (dict(type=None), gq.ValidationError, "job type must be a string"),
    (dict(type="a\x00b"), gq.ValidationError, "control character"),
    (dict(type="a", priority=2**31), gq.ValidationError, "out of range"),
    (dict(type="a", priority=-(2**31) - 1), gq.ValidationError, "out of range"),
    (dict(type="a", priority="high"), gq.ValidationError, "priority must be an integer"),
    (dict(type="a", priority=True), gq.ValidationError, "priority must be an integer"),
    (dict(type="a", delay=-1), gq.ValidationError, "delay must be"),
    (dict(type="a", delay=float("nan")), gq.ValidationError, "delay must be"),
    (dict(type="a", delay=1, run_at=5.0), gq.ValidationError, "not both"),
    (dict(type="a", run_at=datetime(2030, 1, 1)), gq.ValidationError, "timezone-aware"),
    (dict(type="a", max_attempts=0), gq.ValidationError, "max_attempts"),
    (dict(type="a", max_attempts=2**40), gq.ValidationError, "max_attempts .* too large"),
    (dict(type="a", timeout=0), gq.ValidationError, "timeout"),
    (dict(type="a", depends_on="abc"), gq.ValidationError, "list of job ids"),
    (dict(type="a", depends_on=[1]), gq.ValidationError, "dependency id must be a string"),
    (dict(type="a", id="self", depends_on=["self"]), gq.CycleError, "'self' -> 'self'"),
    (dict(type="a", id="x" * 201), gq.ValidationError, "limit is 200"),
    (dict(type="a", id="0123abcd-0123456789ab"), gq.ValidationError, "reserved"),
    (dict(type="a", key=""), gq.ValidationError, "key must not be empty"),
    (dict(type="a", depends_on=["ghost"]), gq.UnknownDependency, "'ghost'"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_SUBMITS,
                         ids=[m for _, _, m in BAD_SUBMITS])
def test_bad_submit_is_refused_and_changes_nothing(queue, kwargs, error, message):
    keep = queue.submit("keep", {"v": 1}, id="keep-1")
    before = snapshot(queue)
    args = dict(kwargs)
    with pytest.raises(error, match=message):
        queue.submit(args.pop("type"), args.pop("payload", None), **args)
    assert snapshot(queue) == before
    assert queue.get(keep).payload == {"v": 1}


@pytest.mark.parametrize("kwargs,error,message", BAD_SUBMITS,
                         ids=[m for _, _, m in BAD_SUBMITS])
def test_bad_job_in_a_batch_is_refused_whole(queue, kwargs, error, message):
    """The same refusals through submit_many, whose plain jobs take a compiled
    fast path: the type "a" is already known, so shapes that look plain reach it."""
    queue.submit_many([{"type": "a"}])   # "a" is now a known type
    before = snapshot(queue)
    with pytest.raises(error, match=message):
        queue.submit_many([{"type": "a", "payload": 1}, dict(kwargs)])
    assert snapshot(queue) == before


def test_fast_and_checked_paths_store_the_same_jobs(queue):
    """A batch mixing plain jobs (compiled path) and others (make_spec) stores
    what one-by-one submits store."""
    jobs = [{"type": "t", "payload": {"n": 1}}, {"type": "t", "priority": -7},
            {"type": "t", "payload": [1, "x"], "priority": 2**31 - 1}, {"type": "t"},
            {"type": "t", "payload": None, "max_attempts": 3}, {"type": "u", "payload": "é"}]
    batch = [queue.get(i) for i in queue.submit_many(jobs)]
    single = [queue.get(queue.submit(j["type"], j.get("payload"),
                                     **{k: v for k, v in j.items() if k not in ("type", "payload")}))
              for j in jobs]
    fields = ("type", "payload", "priority", "state", "attempts", "max_attempts", "run_at",
              "depends_on", "key", "timeout", "lifetime")
    for a, b in zip(batch, single):
        assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
    assert [j.seq for j in batch] == sorted(j.seq for j in batch)


def test_duplicate_id(queue):
    queue.submit("a", 1, id="dup")
    with pytest.raises(gq.ValidationError, match="already used"):
        queue.submit("b", 2, id="dup")
    assert queue.get("dup").payload == 1 and queue.get("dup").type == "a"


def test_payload_limit_is_configurable(data_dir):
    with gq.Queue(data_dir, max_payload_bytes=10) as q:
        with pytest.raises(gq.PayloadTooLarge, match="limit is 10"):
            q.submit("a", "x" * 20)


class TestSubmitMany:
    def test_one_bad_job_persists_none(self, queue):
        before = snapshot(queue)
        with pytest.raises(gq.ValidationError, match="job #2 of the batch"):
            queue.submit_many([{"type": "a"}, {"type": "a"}, {"type": "a", "payload": {1}}])
        with pytest.raises(gq.UnknownDependency):
            queue.submit_many([{"type": "a"}, {"type": "a", "depends_on": ["ghost"]}])
        with pytest.raises(gq.ValidationError, match="twice"):
            queue.submit_many([{"type": "a", "id": "x"}, {"type": "a", "id": "x"}])
        assert snapshot(queue) == before

    @pytest.mark.parametrize("n", [2, 5])
    def test_cycles_are_refused_whole(self, queue, n):
        jobs = [{"type": "a", "id": f"j{i}", "depends_on": [f"j{(i + 1) % n}"]}
                for i in range(n)]
        with pytest.raises(gq.CycleError) as info:
            queue.submit_many([{"type": "ok"}] + jobs)
        assert len(info.value.cycle) == n + 1
        assert info.value.cycle[0] == info.value.cycle[-1]
        assert queue.stats()["total"] == 0

    def test_bad_shapes(self, queue):
        with pytest.raises(gq.ValidationError, match="list of job mappings"):
            queue.submit_many({"type": "a"})
        with pytest.raises(gq.ValidationError, match="not a mapping"):
            queue.submit_many(["a"])
        with pytest.raises(gq.ValidationError, match="no 'type'"):
            queue.submit_many([{"payload": 1}])
        with pytest.raises(gq.ValidationError, match="unknown field"):
            queue.submit_many([{"type": "a", "prio": 1}])
        assert queue.submit_many([]) == []


class TestLookups:
    def test_unknown_id(self, queue):
        with pytest.raises(gq.JobNotFound, match="no job with id 'nope'"):
            queue.get("nope")
        with pytest.raises(KeyError):   # JobNotFound is also a KeyError
            queue.get("nope")

    def test_unknown_state(self, queue):
        with pytest.raises(gq.ValidationError, match="unknown state 'done'"):
            queue.list(state="done")

    def test_unknown_option(self, data_dir):
        with pytest.raises(TypeError, match="unknown Queue option"):
            gq.Queue(data_dir, visibilty_timeout=3)
        with pytest.raises(gq.ValidationError, match="max_depth"):
            gq.Queue(data_dir, max_depth=0)

    def test_closed_queue(self, data_dir):
        q = gq.Queue(data_dir)
        q.close()
        q.close()
        with pytest.raises(gq.GQError, match="closed"):
            q.submit("a")


def test_plain_and_checked_submits_in_one_group_commit(queue):
    """Plain submissions are planned together at the end of a batch; jobs with
    keys or caller-chosen ids in the same batch keep their own checks."""
    async def main():
        plain = [queue.asubmit("p", i) for i in range(200)]
        keyed = [queue.asubmit("k", i, key=f"key-{i % 10}") for i in range(50)]
        named = [queue.asubmit("n", i, id=f"n-{i}") for i in range(20)]
        return await asyncio.gather(*plain, *keyed, *named)

    ids = asyncio.run(main())
    plain_ids, keyed_ids, named_ids = ids[:200], ids[200:250], ids[250:]
    assert len(set(plain_ids)) == 200 and len(set(keyed_ids)) == 10
    assert named_ids == [f"n-{i}" for i in range(20)]
    assert queue.stats()["total"] == 230
    jobs = [queue.get(jid) for jid in plain_ids]
    assert [j.payload for j in jobs] == list(range(200))
    assert [j.seq for j in jobs] == sorted(j.seq for j in jobs)   # FIFO as submitted
    assert len({j.seq for j in map(queue.get, set(ids))}) == 230
