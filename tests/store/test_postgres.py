"""What the PostgreSQL store adds to the contract: sessions of one database
acting at once (as processes on different machines would), the schema version,
wake-ups by NOTIFY, liveness by heartbeat rows, and priority order picked by
the database. Every test runs on a fresh schema of the server named by
$GQ_TEST_POSTGRES (skipped without one, outside CI).
"""

from __future__ import annotations

import asyncio
import select
import threading
import time

import psycopg
import pytest

import gq
from gq._core import states as S
from gq.store.api import ClaimQuota
from gq.errors import DataDirError
from gq.runtime.recovery import recover
from gq.store.postgres import wake as pg_wake
from gq.store.postgres.store import PostgresStore
from gq.submission import make_spec


def spec(job_type="t", payload=None, **kw):
    return make_spec(job_type, payload, max_payload_bytes=1 << 20, **kw)


@pytest.fixture
def stores(postgres_url):
    """stores(n) -> n independent stores on one schema: separate pools, writers
    and sessions, like n processes."""
    opened = []

    def open_stores(n):
        new = [PostgresStore(postgres_url) for _ in range(n)]
        opened.extend(new)
        return new
    yield open_stores
    for store in opened:
        store.close()


def claim_all(store, owner, n=50):
    return store.claim(ClaimQuota(n, {"t": None}), owner=owner,
                       lease_deadline=time.monotonic() + 60, now=time.time())


def test_concurrent_claims_never_hand_out_a_job_twice(stores):
    a, b, c = stores(3)
    ids = a.submit([spec(payload=i) for i in range(300)], max_depth=None, now=time.time())
    got: dict[str, list[str]] = {}

    def drain(store, owner):
        got[owner] = []
        while True:
            claimed = claim_all(store, owner, 7)
            if not claimed:
                return
            got[owner] += [r.id for r in claimed]

    threads = [threading.Thread(target=drain, args=(s, f"w{i}")) for i, s in enumerate((a, b, c))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [jid for owned in got.values() for jid in owned]
    assert sorted(everything) == sorted(ids)          # each exactly once
    assert all(got.values()), {k: len(v) for k, v in got.items()}


def test_claims_follow_priority_then_ready_order(stores):
    (store,) = stores(1)
    ids = store.submit([spec(payload=i, priority=p) for i, p in enumerate([0, 5, 0, 9, 5])],
                       max_depth=None, now=time.time())
    order = [claim_all(store, "w", 1)[0].id for _ in ids]
    assert order == [ids[3], ids[1], ids[4], ids[0], ids[2]]


def test_quota_caps_per_type_and_skips_paused_types(stores):
    (store,) = stores(1)
    store.submit([spec("a", i) for i in range(5)] + [spec("b", i, priority=1) for i in range(5)]
                 + [spec("c", i, priority=2) for i in range(5)], max_depth=None, now=time.time())
    store.set_paused("c", True)
    claimed = store.claim(ClaimQuota(6, {"a": None, "b": 2, "c": None}), owner="w",
                          lease_deadline=0.0, now=time.time())
    assert sorted(r.type for r in claimed) == ["a"] * 4 + ["b"] * 2


def test_one_idempotency_key_from_racing_sessions_makes_one_job(stores):
    racers = stores(4)
    results = []
    barrier = threading.Barrier(len(racers))

    def submit(store):
        barrier.wait()
        results.append(store.submit([spec(key="order:7")], max_depth=None, now=time.time())[0])

    threads = [threading.Thread(target=submit, args=(s,)) for s in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert racers[0].counts() == {(S.SCHEDULED, "t"): 1}


def test_dependent_released_when_its_two_dependencies_complete_at_once(stores):
    for _ in range(5):
        a, b = stores(2)
        p1, p2, child = a.submit([spec(id=f"p1-{_}"), spec(id=f"p2-{_}"),
                                  spec(depends_on=[f"p1-{_}", f"p2-{_}"])],
                                 max_depth=None, now=time.time())
        r1 = a.claim([(p1, a.get(p1).ready_seq)], owner="A", lease_deadline=0.0, now=time.time())
        r2 = b.claim([(p2, b.get(p2).ready_seq)], owner="B", lease_deadline=0.0, now=time.time())
        barrier = threading.Barrier(2)

        def finish(store, rec, owner):
            barrier.wait()
            store.finish(rec.id, attempt=1, owner=owner, state=S.COMPLETED, now=time.time())

        threads = [threading.Thread(target=finish, args=(a, r1[0], "A")),
                   threading.Thread(target=finish, args=(b, r2[0], "B"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert a.get(child).state == S.SCHEDULED and a.get(child).ready_seq


def test_depth_limit_holds_across_sessions(stores):
    racers = stores(4)
    accepted = []

    def submit(store):
        for _ in range(10):
            try:
                store.submit([spec()], max_depth=25, now=time.time())
                accepted.append(1)
            except gq.QueueFull:
                pass

    threads = [threading.Thread(target=submit, args=(s,)) for s in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 25
    assert racers[0].counts() == {(S.SCHEDULED, "t"): 25}


def test_a_newer_schema_version_is_refused(postgres_url):
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE gq_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(DataDirError, match="schema version 99"):
        PostgresStore(postgres_url)


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(DataDirError, match="cannot open the PostgreSQL store"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_a_commit_in_another_session_rings_the_doorbell_at_once(stores, monkeypatch):
    """A commit in another session wakes the listener. The listening thread
    waits for notifications in windows of STOP_CHECK_INTERVAL; it must ring as
    each one arrives, not when its window ends (an idle worker on another
    machine would start the job up to a window late). The window is made long
    here, so a late ring cannot pass."""
    monkeypatch.setattr(pg_wake, "STOP_CHECK_INTERVAL", 3.0)
    listener, writer = stores(2)
    sock = listener.doorbell.listen("w")
    try:
        while select.select([sock], [], [], 0.2)[0]:
            sock.recv(64)                             # the ring of LISTEN's start
        writer.submit([spec()], max_depth=None, now=time.time())
        assert select.select([sock], [], [], 1.5)[0], \
            "no wake-up within 1.5 s of the commit (the listener's window is 3 s)"
    finally:
        listener.doorbell.unlisten(sock)


def test_heartbeat_liveness_and_reclaim_of_a_silent_instance(stores, postgres_url):
    (store,) = stores(1)
    jid = store.submit([spec()], max_depth=None, now=time.time())[0]
    alive = store.liveness.announce("node-a")
    claim_all(store, "node-a")
    assert store.liveness.is_alive("node-a")
    assert recover(store) == []            # alive: left alone
    alive._stop.set()
    alive._thread.join()                             # it stops beating (frozen or killed)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE gq_instances SET heartbeat_at = clock_timestamp() - "
                     "make_interval(secs => %s)", (store.liveness.dead_after + 1,))
    assert not store.liveness.is_alive("node-a")
    assert recover(store) == [jid]
    rec = store.get(jid)
    assert (rec.state, rec.crashes, rec.lease_owner) == (S.SCHEDULED, 1, "")


def test_graceful_exit_with_leftovers_is_not_a_crash(stores):
    (store,) = stores(1)
    jid = store.submit([spec()], max_depth=None, now=time.time())[0]
    alive = store.liveness.announce("node-b")
    claim_all(store, "node-b")
    alive.release(leftover=True)
    assert store.liveness.exited_cleanly("node-b")
    assert recover(store) == [jid]
    assert store.get(jid).crashes == 0
    assert not store.liveness.exited_cleanly("node-b")   # the row is gone


def test_lease_deadlines_use_the_database_clock(stores):
    (store,) = stores(1)
    jid = store.submit([spec()], max_depth=None, now=time.time())[0]
    store.claim(ClaimQuota(1, {"t": None}), owner="frozen",
                lease_deadline=time.monotonic() - 1, now=time.time())
    alive = store.liveness.announce("frozen")
    try:
        (_, owner, deadline), = store.running_leases()
        assert owner == "frozen" and deadline < time.monotonic()
        assert recover(store) == [jid]     # alive, but its lease ran out
    finally:
        alive.release()


def test_asubmit_from_many_coroutines_shares_transactions(stores):
    (store,) = stores(1)

    async def main():
        return await asyncio.gather(*(store.asubmit([spec(payload=i)], now=time.time())
                                      for i in range(500)))
    ids = [r[0] for r in asyncio.run(main())]
    assert len(set(ids)) == 500
    # concurrent callers have no order among them (several writer sessions), but
    # every caller got the id of its own job
    assert [store.get(i).payload for i in ids] == [str(i).encode() for i in range(500)]


def test_check_finds_nothing_on_a_healthy_store_and_a_stuck_dependent(stores, postgres_url):

    (store,) = stores(1)
    store.submit([spec(id="p"), spec(id="c", depends_on=["p"]), spec()], max_depth=None,
                 now=time.time())
    report = store.check()
    assert report.ok and report.records == 3
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")   # no count triggers
        conn.execute("UPDATE gq_jobs SET state = 3, ready_seq = NULL WHERE id = 'p'")
    report = store.check()
    assert not report.ok
    assert any("counts" in p for p in report.index_problems)
    assert any("job c is pending" in p for p in report.index_problems)


def test_store_outlives_its_sessions_being_ended(stores, postgres_url):
    """A server restart or an idle-session timeout ends every session: the next
    write, read and wake-up go through on new sessions, nothing lost."""
    listener, store = stores(2)
    sock = listener.doorbell.listen("w")
    try:
        first = store.submit([spec(payload=1)], max_depth=None, now=time.time())[0]
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'").fetchone()[0]
        assert ended >= 4
        time.sleep(0.2)
        while select.select([sock], [], [], 0.1)[0]:
            sock.recv(64)
        second, third = (store.submit([spec(payload=n)], max_depth=None, now=time.time())[0]
                         for n in (2, 3))          # both writer sessions were ended
        assert [store.get(j).payload for j in (first, second, third)] == [b"1", b"2", b"3"]
        wait_s = time.monotonic() + 10
        while time.monotonic() < wait_s and not select.select([sock], [], [], 0.2)[0]:
            store.submit([spec()], max_depth=None, now=time.time())   # after it relistens
        assert select.select([sock], [], [], 0)[0], "no wake-up after the sessions ended"
        assert store.counts()[(S.SCHEDULED, "t")] >= 3
    finally:
        listener.doorbell.unlisten(sock)


def test_circuit_breaker_opens_while_the_server_refuses_and_closes_after(postgres_url):
    """The server refuses every session (its database closed to connections, the
    open ones ended): writes fail, the circuit opens (StoreUnavailable, readiness
    false); once the server accepts again, the probe after the cool-down closes it."""
    from urllib.parse import urlsplit, urlunsplit

    import secrets as _secrets

    server = postgres_url.split("?")[0]
    name = f"gq_breaker_{_secrets.token_hex(4)}"
    admin = psycopg.connect(server, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    store = PostgresStore(url, circuit_threshold=2, circuit_cooldown=0.5)
    try:
        store.submit([spec()], max_depth=None, now=time.time())
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s", (name,))
        for _ in range(2):
            with pytest.raises(gq.errors.PersistenceError):
                store.submit([spec()], max_depth=None, now=time.time())
        with pytest.raises(gq.errors.StoreUnavailable, match="circuit open"):
            store.submit([spec()], max_depth=None, now=time.time())
        ready, reason = store.health()
        assert not ready and "unavailable" in reason
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        time.sleep(0.6)
        assert store.health() == (True, "ok")           # the probe closed it
        store.submit([spec()], max_depth=None, now=time.time())
        assert store.counts() == {(S.SCHEDULED, "t"): 2}
    finally:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        store.close()
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def test_one_statement_batch_keeps_every_field_and_id_form(stores, postgres_url):
    """The new jobs of a batch go in as packed binary arrays with one statement
    (gq.store.postgres.insert): every field comes back as given (non-ASCII text, empty
    and binary-looking payloads, NULL-or-not ids and keys, dependencies), each
    caller gets its own job's id, and generated ids keep the f"{tag}-{seq:012x}"
    form past 12 hex digits."""
    (store,) = stores(1)
    first = store.submit([spec("typ-é", None, id="dép-1")], max_depth=None, now=time.time())
    assert first == ["dép-1"]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT setval('gq_seq', %s)", (1 << 52,))
    now = time.time()
    specs = [spec("typ-é", {"s": "ünï"}, priority=-5, run_at=now + 3600, max_attempts=7,
                  timeout=2.5, lifetime=60.0),
             spec("t", "", id="given-ïd", key="kéy"),
             spec("t", [1, 2], depends_on=["dép-1"]),
             spec("t", {"n": 0})]
    ids = store.submit(specs, max_depth=None, now=now)
    assert ids[1] == "given-ïd"
    for job_id in (ids[0], ids[2], ids[3]):
        tag, seq = job_id.rsplit("-", 1)
        assert tag == store.tag and len(seq) == 14 and int(seq, 16) > 1 << 52
    recs = [store.get(i) for i in ids]
    assert [r.type for r in recs] == ["typ-é", "t", "t", "t"]
    assert [r.payload for r in recs] == [s.payload for s in specs]
    assert (recs[0].priority, recs[0].run_at, recs[0].max_attempts, recs[0].timeout,
            recs[0].lifetime) == (-5, now + 3600, 7, 2.5, 60.0)
    assert recs[0].state == S.SCHEDULED and recs[3].state == S.SCHEDULED
    assert recs[1].key == "kéy" and recs[0].key == "" and recs[3].key == ""
    assert list(recs[2].depends_on) == ["dép-1"] and recs[2].state == S.PENDING
    assert list(recs[3].depends_on) == []
    assert recs[0].seq < recs[1].seq < recs[2].seq < recs[3].seq   # submission order
    assert store.states_of(["dép-1"])["dép-1"][0] == S.SCHEDULED
    assert store.counts() == {(S.SCHEDULED, "typ-é"): 2, (S.SCHEDULED, "t"): 2,
                              (S.PENDING, "t"): 1}

    async def many():   # concurrent asubmits: batches of plain jobs, one statement each
        return await asyncio.gather(*(store.asubmit([spec("t", i)], now=time.time())
                                      for i in range(200)))
    got = [r[0] for r in asyncio.run(many())]
    assert [store.get(i).payload for i in got] == [str(i).encode() for i in range(200)]


def _true_counts(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        return {(s, t): n for s, t, n in conn.execute(
            "SELECT state, type, count(*) FROM gq_jobs GROUP BY 1, 2")}


def test_schema_v2_store_is_migrated_on_open_and_counts_stay_exact(postgres_url):
    """A store made by schema v2 (its jobs counted by the insert trigger) opens
    migrated to the latest version: v3's two dropped indexes are gone, v4's
    result waiters table is there, the lone batch INSERT counts its
    own jobs (the trigger skips them), inserts inside a longer transaction and
    moved-in records are still counted by the trigger, never twice."""
    from gq.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
    from gq.store.records import restore_record

    assert SCHEMA_VERSION == 4
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(MIGRATIONS[0])
        conn.execute(MIGRATIONS[1])
        conn.execute("INSERT INTO gq_meta VALUES ('tag', 'abcd1234'), ('schema_version', '2')")
        conn.execute("INSERT INTO gq_jobs (id, type, state, seq, ready_seq, created_at, "
                     "updated_at, payload) SELECT 'old-' || g, 'old', 1, nextval('gq_seq'), "
                     "currval('gq_seq'), 0, 0, '' FROM generate_series(1, 3) g")
    store = PostgresStore(postgres_url)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            assert conn.execute("SELECT value FROM gq_meta WHERE key = 'schema_version'"
                                ).fetchone()[0] == "4"
            assert conn.execute("SELECT to_regclass('gq_waiters')").fetchone()[0] is not None
            assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname IN "
                                "('gq_jobs_by_state', 'gq_jobs_ready_feed') AND schemaname "
                                "= current_schema()").fetchone()[0] == 0
        assert store.counts() == {(S.SCHEDULED, "old"): 3}
        store.submit([spec("a"), spec("b"), spec("a")], max_depth=None, now=time.time())
        assert store.counts() == _true_counts(postgres_url) == {
            (S.SCHEDULED, "old"): 3, (S.SCHEDULED, "a"): 2, (S.SCHEDULED, "b"): 1}
        # a key: the batch reads first, so it is a transaction the trigger counts
        store.submit([spec("a", key="k1"), spec("b", id="named")], max_depth=None,
                     now=time.time())
        later = time.time()
        store.insert_records([restore_record("moved", "b", b"{}", S.COMPLETED, finished_at=later),
                              restore_record("moved-2", "a", b"", S.SCHEDULED)], now=later)
        assert store.counts() == _true_counts(postgres_url)
        assert store.check().ok
        assert [r.id for r in store.list(state=S.SCHEDULED, limit=3)] == ["old-1", "old-2",
                                                                          "old-3"]
    finally:
        store.close()
    reopened = PostgresStore(postgres_url)    # v4 already: nothing to migrate
    reopened.close()


def test_listing_one_state_walks_the_types_in_seq_order(stores, postgres_url):
    """list(state=) over every type: seq order across types, the limit applied
    to all of them, served by the (type, state, seq) index."""
    (store,) = stores(1)
    ids = store.submit([spec(t) for t in ("b", "a", "c", "a", "b", "c", "a")],
                       max_depth=None, now=time.time())
    claimed = {r.id for r in store.claim(ClaimQuota(1, {"c": None}), owner="o",
                                         lease_deadline=time.monotonic() + 60,
                                         now=time.time())}
    scheduled = [i for i in ids if i not in claimed]
    assert [r.id for r in store.list(state=S.SCHEDULED)] == scheduled
    assert [r.id for r in store.list(state=S.SCHEDULED, limit=4)] == scheduled[:4]
    assert [r.id for r in store.list(state=S.RUNNING)] == sorted(claimed)
    assert store.list(state=S.FAILED) == []
    from gq.store.postgres.store import LIST_STATE
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + LIST_STATE.replace("%s", "1")))
    assert "gq_jobs_by_type" in plan


def test_push_ready_after_fills_a_heap_with_the_handled_types(stores):
    """The contract's push_ready_after on PostgreSQL (its workers claim by quota,
    but the method behaves as on LMDB: handled types only, in ready order)."""
    from gq._core.heap import ReadyHeap

    [store] = stores(1)
    store.submit([spec("a", priority=1), spec("b"), spec("a", priority=5)], now=time.time())
    heap = ReadyHeap()
    n, last = store.push_ready_after(heap, 0, 10, {"a"})
    assert n == 3 and last == store.ready_after(0, 10)[-1][0]
    assert len(heap) == 2
    assert store.push_ready_after(ReadyHeap(), last, 10, {"a"}) == (0, 0)
