"""The load of the PostgreSQL kill test: one process per role,

    python pg_load.py ROLE URL LEDGER TAG STOPFILE

run until STOPFILE exists (the hand worker: STOPFILE.workers; a gq.Worker:
until SIGTERM). Every call's answer is
appended to LEDGER, one line each (one write each: the process is never
killed, the server is), `KIND t_call t_return FIELDS... JSON`:

    ACK   op id payload     a submit returned `id` (op: one, async, many, keyed,
                            delayed, flaky, manual)
    DUP   many id payload   a resubmit of a submit_many whose answer was lost was
                            refused with DuplicateJobId: the lost one committed
    CANCEL - id null        cancel returned
    RETRY - id null         an operator's retry of a dead_letter job returned
    FIN   attempt id result finish (of a job claimed by hand) returned
    RUN   attempt id null   a handler started (gq.Worker or by hand)
    READ  list n null       the operator's listing of dead_letter jobs returned
    ERR   op ErrorName msg  a call raised (its outcome unknown if a gq error)

Roles: one (one-by-one `submit`, every 4th job of type `manual`), async (16
concurrent `asubmit` loops), many (`submit_many` with caller-chosen ids,
resubmitted after an error until acknowledged or refused as a duplicate),
keyed (`submit` with an idempotency key, resubmitted after an error until it
returns), operator (delayed jobs cancelled, `flaky` jobs dead-lettered and
retried), manual (claims `manual` jobs through the store and finishes them by
hand), worker (a real `gq.Worker` for `job` and `flaky`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

import gq
from gq.errors import DuplicateJobId, LeaseLost
from gq._core import states as S
from gq.store.api import ClaimQuota

COOLDOWN = 0.5          # the queues' circuit_cooldown (the default, 10 s, is too slow here)
KEY_WINDOW = 3600.0     # a completed job keeps its key: a late resubmit finds it
PAUSE = 0.002           # between two calls of one loop (two cores, shared)
LEASE = 5.0            # the hand worker's lease: a claim whose answer was lost is
                       # reclaimed (by a gq.Worker's recovery) once it runs out


class Ledger:
    """One write(2) per line on an O_APPEND descriptor: handler threads and the
    event loop write at once, and no line may tear another."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, kind: str, t0: float, op, ref, data=None) -> None:
        os.write(self.fd, f"{kind} {t0:.6f} {time.time():.6f} {op} {ref} "
                 f"{json.dumps(data, ensure_ascii=False)}\n".encode())

    def error(self, t0: float, op: str, e: Exception) -> None:
        self.line("ERR", t0, op, type(e).__name__, str(e).replace("\n", " ")[:200])


def payload(tag: str, n: int, rng: random.Random) -> dict:
    return {"s": tag, "n": n, "x": "".join(rng.choice("ab\u00e9\u4e2d ") for _ in range(
        rng.randint(0, 40)))}


def run_one(q, log, tag, stop, rng):
    n = 0
    while not os.path.exists(stop):
        n += 1
        p, kind = payload(tag, n, rng), "manual" if n % 4 == 0 else "job"
        t0 = time.time()
        try:
            log.line("ACK", t0, "manual" if kind == "manual" else "one",
                     q.submit(kind, p), p)
        except gq.GQError as e:
            log.error(t0, "one", e)
        time.sleep(PAUSE)


def run_async(q, log, tag, stop, rng):
    async def loop(k):
        n = 0
        while not os.path.exists(stop):
            n += 1
            p = payload(f"{tag}.{k}", n, rng)
            t0 = time.time()
            try:
                log.line("ACK", t0, "async", await q.asubmit("job", p), p)
            except gq.GQError as e:
                log.error(t0, "async", e)
                await asyncio.sleep(0.01)
            await asyncio.sleep(PAUSE)

    async def main():
        await asyncio.gather(*(loop(k) for k in range(16)))
    asyncio.run(main())


def run_many(q, log, tag, stop, rng):
    n = 0
    while not os.path.exists(stop):
        n += 1
        jobs = [{"type": "job", "payload": payload(tag, n * 100 + i, rng),
                 "id": f"{tag}-{n}-{i}"} for i in range(rng.randint(2, 12))]
        while True:   # the same batch (same ids) until the store answers for it
            t0 = time.time()
            try:
                ids = q.submit_many(jobs)
                for job_id, job in zip(ids, jobs):
                    log.line("ACK", t0, "many", job_id, job["payload"])
                break
            except DuplicateJobId:
                for job in jobs:
                    log.line("DUP", t0, "many", job["id"], job["payload"])
                break
            except gq.GQError as e:
                log.error(t0, "many", e)
                time.sleep(0.02)
        time.sleep(PAUSE)


def run_keyed(q, log, tag, stop, rng):
    n = 0
    while not os.path.exists(stop):
        n += 1
        p = payload(tag, n, rng)
        while True:   # the same key until a submit returns
            t0 = time.time()
            try:
                log.line("ACK", t0, "keyed", q.submit("job", p, key=f"{tag}-k{n}"), p)
                break
            except gq.GQError as e:
                log.error(t0, "keyed", e)
                time.sleep(0.02)
        time.sleep(PAUSE)


def run_operator(q, log, tag, stop, rng):
    n, delayed, retried = 0, [], {}
    while not os.path.exists(stop):
        n += 1
        t0 = time.time()
        try:
            if n % 2:
                p = payload(tag, n, rng)
                delayed.append(q.submit("job", p, delay=rng.uniform(0.2, 2.0)))
                log.line("ACK", t0, "delayed", delayed[-1], p)
            else:
                p = payload(tag, n, rng)
                log.line("ACK", t0, "flaky", q.submit("flaky", p, max_attempts=1), p)
        except gq.GQError as e:
            log.error(t0, "submit", e)
        if len(delayed) > 3 and rng.random() < 0.5:
            job_id = delayed.pop(rng.randrange(len(delayed)))
            t0 = time.time()
            try:
                q.cancel(job_id)
                log.line("CANCEL", t0, "-", job_id)
            except gq.GQError as e:
                log.error(t0, "cancel", e)
        t0 = time.time()
        try:
            dead = [j.id for j in q.list(state="dead_letter", type="flaky", limit=20)
                    if retried.get(j.id, 0) < 2]
            log.line("READ", t0, "list", len(dead))
        except gq.GQError as e:
            log.error(t0, "list", e)
            dead = []
        for job_id in dead[:3]:
            t0 = time.time()
            try:
                q.retry(job_id)
                retried[job_id] = retried.get(job_id, 0) + 1
                log.line("RETRY", t0, "-", job_id)
            except gq.GQError as e:
                log.error(t0, "retry", e)
        time.sleep(0.02)


def run_manual(q, log, tag, stop, rng):
    """A worker by hand: claim through the store, finish each job, retrying a
    finish whose answer was lost until it returns or is refused (LeaseLost)."""
    store = q.store
    announcement = store.liveness.announce(tag)
    try:
        while not os.path.exists(stop):
            t0 = time.time()
            try:
                claimed = store.claim(ClaimQuota(4, {"manual": None}), owner=tag,
                                      lease_deadline=time.monotonic() + LEASE, now=time.time())
            except gq.GQError as e:
                log.error(t0, "claim", e)
                time.sleep(0.05)
                continue
            for rec in claimed:
                log.line("RUN", time.time(), rec.attempts, rec.id)
                result = {"n": json.loads(bytes(rec.payload))["n"]}
                while True:
                    t0 = time.time()
                    try:
                        store.finish(rec.id, attempt=rec.attempts, owner=tag,
                                     state=S.COMPLETED, now=time.time(),
                                     result=json.dumps(result).encode())
                        log.line("FIN", t0, rec.attempts, rec.id, result)
                        break
                    except (LeaseLost, gq.JobNotFound) as e:
                        log.error(t0, "finish", e)
                        break
                    except gq.GQError as e:
                        log.error(t0, "finish", e)
                        time.sleep(0.05)
            time.sleep(0.01 if claimed else 0.05)
    finally:
        announcement.release()


def run_worker(q, log, tag, stop, rng):
    @q.handler("job")
    async def job(job):
        log.line("RUN", time.time(), job.attempt, job.id)
        await asyncio.sleep(rng.uniform(0, 0.02))
        return {"n": job.payload["n"]}

    @q.handler("flaky")
    def flaky(job):
        log.line("RUN", time.time(), job.attempt, job.id)
        raise gq.TemporaryError("flaky by design")

    gq.Worker(q, concurrency=8).run()


ROLES = {"one": run_one, "async": run_async, "many": run_many, "keyed": run_keyed,
         "operator": run_operator, "manual": run_manual, "worker": run_worker}


def main() -> None:
    role, url, ledger, tag, stop = sys.argv[1:6]
    rng = random.Random(f"{tag}:{os.getpid()}")
    with gq.Queue(url, idempotency_window=KEY_WINDOW, circuit_cooldown=COOLDOWN) as q:
        # the workers go on until the queue is drained: STOPFILE.workers
        ROLES[role](q, Ledger(ledger), tag, stop + ".workers" if role == "manual" else stop,
                    rng)


if __name__ == "__main__":
    main()
