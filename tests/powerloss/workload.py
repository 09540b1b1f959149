"""The load that runs on the lazyfs mount until the power is cut: every kind of
durable write gq makes, each acknowledgement written to a log as it returns.

Two processes share the data dir, as in production (they share LMDB's writer
lock, and one's meta-page sync overlaps the other's commit):

- the client: bursts of concurrent `asubmit`s (group commit), one-by-one
  `submit`s and `submit_many` batches from a thread beside them, delayed jobs
  (promoted by the worker when due), far-delayed jobs it cancels, and operator
  `retry` of dead-lettered jobs;
- the worker: a gq.Worker claiming and finishing jobs, with retries (a handler
  that fails its first attempt), dead letters (one that always fails) and a
  periodic schedule.

The log lives outside the mount (a SIGKILL keeps the page cache; the power cut
is simulated only below the mount). One write(2) per line on an O_APPEND
descriptor; a line is written only after the call it reports returned:

  S id type name        submit acknowledged (the payload is payload(name))
  I id kind t           an operator call is about to be made (t: before it)
  X id t / R id t       cancel / operator retry acknowledged
  F id attempt state t  a finish committed (t: the `now` it was written with)
  RUN id attempt        a handler started
  E where error         a caller got an error (PersistenceError, ...)
  P message             the store logged a persistence error
  O message             the store reopened its environment after one
  W message             a worker's own write failed (no caller waits on it)

`unsafe=True` is the negative control: LMDB with sync off and no meta-page
sync, a switch that exists only here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time

import gq
from gq._core.states import STATE_NAMES
from gq.errors import GQError, PersistenceError

LOG = -1


def payload(name: str) -> dict:
    return {"name": name, "blob": name * 7, "n": [len(name), 2**40]}


def log(line: str) -> None:
    os.write(LOG, (line + "\n").encode())


class StoreErrors(logging.Handler):
    """Every persistence error the store logs ("P"), every reopen ("O"), and the
    worker's own writes that failed ("W": outcomes, the periodic scheduler,
    recovery, heartbeats), into the log."""

    def emit(self, record):
        text = record.getMessage().replace("\n", " ")
        if record.name == "gq.store":
            if "persistence error" in text:
                log(f"P {os.getpid()} {text}")
            elif "reopen" in text:
                log(f"O {os.getpid()} {text}")
        elif record.levelno >= logging.ERROR and ("store" in text or "could not record" in text):
            log(f"W {os.getpid()} {record.name} {text[:200]}")


def _unsafe_no_sync() -> None:
    """The negative control: open LMDB with sync off and skip the meta-page sync."""
    import lmdb

    from gq.store.lmdb import store as lmdb_store

    def open_env(path, map_size):
        os.makedirs(path, exist_ok=True)
        return lmdb.open(path, map_size=map_size, max_dbs=4, max_readers=1024,
                         sync=False, metasync=False, subdir=True)

    def commit(env, txn, visible=None):
        txn.commit()
        if visible is not None:
            visible()
    lmdb_store.open_env = open_env
    lmdb_store.durable_commit = commit


def start(data: str, log_path: str, unsafe: bool) -> gq.Queue:
    global LOG
    LOG = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    handler = StoreErrors()
    handler.setLevel(logging.WARNING)
    logging.getLogger("gq").addHandler(handler)
    logging.getLogger("gq").setLevel(logging.WARNING)
    if unsafe:
        _unsafe_no_sync()
    for _ in range(100):
        try:
            q = gq.Queue(data, circuit_cooldown=0.05)
            break
        except PersistenceError as e:     # the opening commit's sync failed: told, retry
            log(f"E open {type(e).__name__} {os.getpid()}")
            time.sleep(0.02)
    else:
        raise SystemExit("the store would not open")
    log(f"START {os.getpid()} {q.store.tag}")
    return q


def _guard(where: str, fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except GQError as e:
        log(f"E {where} {type(e).__name__} {os.getpid()}")
        return None


# -- the client ----------------------------------------------------------------
def client(data: str, log_path: str, seed: int, unsafe: bool) -> None:
    q = start(data, log_path, unsafe)
    rng = random.Random(seed)
    tag = f"{seed:x}"
    retried: set[str] = set()

    def sync_side(stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            for i in range(3):
                name = f"{tag}.s{n}.{i}"
                jid = _guard("submit", q.submit, "pl.ok", payload(name), priority=i)
                if jid:
                    log(f"S {jid} pl.ok {name}")
            names = [f"{tag}.m{n}.{i}" for i in range(10)]
            ids = _guard("submit_many", q.submit_many,
                         [{"type": "pl.flaky" if i % 3 == 0 else "pl.ok",
                           "payload": payload(x)} for i, x in enumerate(names)])
            for i, (jid, x) in enumerate(zip(ids or (), names)):
                log(f"S {jid} {'pl.flaky' if i % 3 == 0 else 'pl.ok'} {x}")
            name = f"{tag}.d{n}"       # due soon: the worker promotes it
            jid = _guard("submit", q.submit, "pl.ok", payload(name), delay=0.05)
            if jid:
                log(f"S {jid} pl.ok {name}")
            name = f"{tag}.doom{n}"
            jid = _guard("submit", q.submit, "pl.doomed", payload(name))
            if jid:
                log(f"S {jid} pl.doomed {name}")
            name = f"{tag}.later{n}"   # far in the future: cancelled before it runs
            jid = _guard("submit", q.submit, "pl.later", payload(name), delay=3600)
            if jid:
                log(f"S {jid} pl.later {name}")
                t = time.time()
                log(f"I {jid} cancel {t}")
                if _guard("cancel", q.cancel, jid) is not None:
                    log(f"X {jid} {t}")
            if n % 4 == 0:
                dead = _guard("list", q.list, state="dead_letter", type="pl.doomed",
                              limit=20) or []
                for info in dead:
                    if info.id in retried:
                        continue
                    retried.add(info.id)
                    t = time.time()
                    log(f"I {info.id} retry {t}")
                    if _guard("retry", q.retry, info.id) is not None:
                        log(f"R {info.id} {t}")

    async def async_side() -> None:
        n = 0
        while True:
            n += 1
            width = rng.choice((8, 32, 64))

            async def one(i):
                name = f"{tag}.a{n}.{i}"
                try:
                    jid = await q.asubmit("pl.ok", payload(name))
                except GQError as e:
                    log(f"E asubmit {type(e).__name__} {os.getpid()}")
                    return
                log(f"S {jid} pl.ok {name}")
            await asyncio.gather(*(one(i) for i in range(width)))
            await asyncio.sleep(0.002)

    stop = threading.Event()
    threading.Thread(target=sync_side, args=(stop,), daemon=True).start()
    asyncio.run(async_side())     # until the power is cut


# -- the worker ----------------------------------------------------------------
def worker(data: str, log_path: str, seed: int, unsafe: bool) -> None:
    q = start(data, log_path, unsafe)

    def ran(job):
        log(f"RUN {job.id} {job.attempt}")

    @q.handler("pl.ok")
    def ok(job):
        ran(job)
        return job.payload["n"][0]

    @q.handler("pl.flaky", max_attempts=3, backoff_base=0.01, backoff_cap=0.02)
    async def flaky(job):
        ran(job)
        if job.attempt == 1:
            raise RuntimeError("first attempts fail")
        return 1

    @q.handler("pl.doomed", max_attempts=1)
    def doomed(job):
        ran(job)
        raise RuntimeError("always fails")

    @q.handler("pl.later")
    def later(job):
        ran(job)

    @q.periodic(every=0.1, type="pl.tick")
    def tick(job):
        ran(job)

    store = q.store
    finish = store.afinish_many_and_claim

    async def recorded(finishes, *, now, **kw):
        # observation only: the real store commits; we note what it acknowledged
        refused, claimed = await finish(finishes, now=now, **kw)
        for f in finishes:
            if f.id not in refused:
                log(f"F {f.id} {f.attempt} {STATE_NAMES[f.state]} {now}")
        return refused, claimed
    store.afinish_many_and_claim = recorded
    w = gq.Worker(q, concurrency=8)
    w.outcomes.retry_delay = 0.02     # after a failed commit (default 0.5 s)
    w.run()
