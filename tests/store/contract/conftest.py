"""The store contract: every Store backend must pass these, on a real store.

Each test runs once per backend (the `backend` fixture of tests/conftest.py):
LMDB in a temp dir, and PostgreSQL in a fresh schema of the server named by
$GQ_TEST_POSTGRES (skipped outside CI without one). A test of a behaviour of
LMDB alone is marked `pytest.mark.lmdb_only(reason)`; one of an optional
capability checks `store.capabilities`.

The helpers drive the store as a worker does: `run` submits and claims a job,
`finish` records an outcome under the claim's owner and attempt. Lease
deadlines are time.monotonic() values, as the worker passes them.
"""

from __future__ import annotations

import time

import pytest

from gq._core import states as S
from gq.store.lmdb.store import LMDBStore
from gq.submission import make_spec

MiB = 1 << 20
LEASE = 60.0        # seconds a helper's claim is leased for
OWNER = "w"         # the helpers' worker instance


def spec(job_type="t", payload=None, **kw):
    return make_spec(job_type, payload, max_payload_bytes=MiB, **kw)


@pytest.fixture
def open_store(backend, request, tmp_path):
    """open_store() -> a store of this test's backend (the same data dir or schema
    each call: a reopen), closed at teardown."""
    opened = []
    url = None
    if backend == "postgres":
        marker = request.node.get_closest_marker("lmdb_only")
        if marker is not None:
            pytest.skip(f"LMDB only: {marker.args[0]}")
        url = request.getfixturevalue("postgres_url")

    def open_store():
        if url is not None:
            from gq.store.postgres.store import PostgresStore
            store = PostgresStore(url)
        else:
            store = LMDBStore(str(tmp_path / "store"), map_size=1 << 30)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store()


def submit(store, *specs, max_depth=None, now=None):
    return store.submit(list(specs), max_depth=max_depth,
                        now=time.time() if now is None else now)


def ready_ids(store) -> list[str]:
    """The ids of the ready jobs, in ready order."""
    return [row[3] for row in store.ready_after(0, 1000)]


def candidates(store, *job_ids):
    """(id, ready_seq) claim candidates: of `job_ids` as stored now, or (none
    named) of every ready job, read from `ready_after` like a dispatcher."""
    if not job_ids:
        return [(row[3], row[0]) for row in store.ready_after(0, 1000)]
    return [(job_id, store.get(job_id).ready_seq) for job_id in job_ids]


def claim(store, *job_ids, owner=OWNER, lease_deadline=None, now=None):
    """Claim the named jobs (as they are stored now); returns the claimed records."""
    return store.claim(candidates(store, *job_ids), owner=owner,
                       lease_deadline=time.monotonic() + LEASE if lease_deadline is None
                       else lease_deadline,
                       now=time.time() if now is None else now)


def run(store, *specs, owner=OWNER, lease_deadline=None):
    """Submit jobs and claim them: the running records, in submission order."""
    ids = submit(store, *(specs or (spec(),)))
    claimed = {rec.id: rec for rec in claim(store, *ids, owner=owner,
                                            lease_deadline=lease_deadline)}
    assert set(claimed) == set(ids)
    return [claimed[job_id] for job_id in ids]


def finish(store, job_id, state, *, attempt=None, owner=OWNER, now=None, **outcome):
    """Record an outcome of the job's current attempt (or `attempt`)."""
    if attempt is None:
        attempt = store.get(job_id).attempts
    return store.finish(job_id, attempt=attempt, owner=owner, state=state,
                        now=time.time() if now is None else now, **outcome)


def state_of(store, job_id) -> str:
    rec = store.get(job_id)
    return "gone" if rec is None else S.STATE_NAMES[rec.state]


def in_every_state(store) -> dict[str, str]:
    """One job in each state (two scheduled: due now, and later), by name."""
    now = time.time()
    ids = dict(zip(["due", "later", "blocker", "running", "completed", "failed",
                    "dead_letter", "cancelled"],
                   submit(store, spec("t", priority=9), spec("t", run_at=4070908800.0),
                          *[spec("t", priority=8 - n) for n in range(6)])))
    ids["pending"] = submit(store, spec("t", depends_on=[ids["blocker"]]))[0]
    ready = {rec.id: rec for rec in (store.get(job_id) for job_id in ids.values())}
    order = ["due", "blocker", "running", "completed", "failed", "dead_letter", "cancelled"]
    claimed = store.claim([(ids[n], ready[ids[n]].ready_seq) for n in order],
                          owner="w", lease_deadline=time.monotonic() + 60, now=now)
    assert {rec.id for rec in claimed} == {ids[n] for n in order}
    for name, state in [("due", S.SCHEDULED), ("blocker", S.SCHEDULED),
                        ("completed", S.COMPLETED), ("failed", S.FAILED),
                        ("dead_letter", S.DEAD_LETTER), ("cancelled", S.SCHEDULED)]:
        store.finish(ids[name], attempt=1, owner="w", state=state, now=now)
    store.cancel(ids["cancelled"], now=now)
    del ids["blocker"]
    states = {name: S.STATE_NAMES[store.get(job_id).state] for name, job_id in ids.items()}
    assert states == {"due": "scheduled", "later": "scheduled", "pending": "pending",
                      "running": "running", "completed": "completed", "failed": "failed",
                      "dead_letter": "dead_letter", "cancelled": "cancelled"}
    return ids
