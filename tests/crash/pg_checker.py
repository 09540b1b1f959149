"""The checker of the PostgreSQL kill test, in the manner of Jepsen's total-queue
checker: the ledgers of the load processes (tests/crash/pg_load.py) say what gq
acknowledged; the rows of the store after the last restart say what is left.

- lost: an acknowledged submit (or a resubmit refused as a duplicate, which
  says the lost one committed) whose job is not stored, or stored with another
  payload or type — must be 0;
- every acknowledged transition still in effect: a cancel that returned ->
  cancelled; a finish that returned -> completed with that result; an
  operator's retry that returned -> the job ran again after it;
- no state outside the state machine: after the drain every job (acknowledged
  or not) is in the terminal state its type leads to, a completed job holds
  its handler's result, and no idempotency key has two jobs;
- duplicates: a job executed more than once; each must be explained by a kill
  between its first and its last run (it was running when the server died);
- phantoms: completed without a run on record — must be 0.
"""

from __future__ import annotations

import collections
import glob
import json
from dataclasses import dataclass, field

import psycopg

from gq._core import states as S

ACKED = ("ACK", "DUP")
SUCCESS = ("ACK", "DUP", "CANCEL", "RETRY", "FIN", "RUN", "READ")


@dataclass
class Line:
    kind: str
    t0: float
    t1: float
    op: str
    ref: str
    data: object
    source: str


def read_ledgers(pattern: str) -> list[Line]:
    lines = []
    for path in sorted(glob.glob(pattern)):
        source = path.rsplit("/", 1)[-1].split(".")[0]
        with open(path) as f:
            for raw in f:
                if not raw.endswith("\n"):
                    continue   # torn: the process was still writing
                kind, t0, t1, op, ref, data = raw.rstrip("\n").split(" ", 5)
                lines.append(Line(kind, float(t0), float(t1), op, ref, json.loads(data),
                                  source))
    return lines


@dataclass
class Verdict:
    acknowledged: int = 0
    found_stored: int = 0           # resubmits refused as duplicates: the lost one committed
    lost: list = field(default_factory=list)
    broken: list = field(default_factory=list)       # transitions not in effect, bad states
    duplicates: list = field(default_factory=list)   # (id, runs), each explained by a kill
    unexplained: list = field(default_factory=list)  # duplicates no kill explains
    phantoms: list = field(default_factory=list)
    unacknowledged_stored: int = 0
    in_flight_errors: int = 0       # calls in flight at a kill that raised
    in_flight_acks: int = 0         # calls in flight at a kill that returned (and committed)
    longest_call: float = 0.0
    counts: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        out = []
        for name in ("lost", "broken", "unexplained", "phantoms"):
            items = getattr(self, name)
            if items:
                out.append(f"{len(items)} {name}: {items[:10]}")
        return out


def stored_jobs(url: str) -> dict[str, tuple]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, type, state, payload, result, coalesce(key, ''), "
                            "finished_at FROM gq_jobs").fetchall()
    return {r[0]: (r[1], r[2], json.loads(bytes(r[3])),
                   json.loads(bytes(r[4])) if r[4] else None, r[5], r[6]) for r in rows}


FINAL = {"job": {S.COMPLETED, S.CANCELLED}, "manual": {S.COMPLETED},
         "flaky": {S.DEAD_LETTER}}
TYPE_OF = {"one": "job", "async": "job", "many": "job", "keyed": "job", "delayed": "job",
           "manual": "manual", "flaky": "flaky"}


def check(lines: list[Line], jobs: dict[str, tuple], kills: list[float]) -> Verdict:
    v = Verdict()
    acked_ids = set()
    runs = collections.defaultdict(list)
    for line in lines:
        v.longest_call = max(v.longest_call, line.t1 - line.t0)
        if any(line.t0 < k < line.t1 for k in kills):
            if line.kind == "ERR":
                v.in_flight_errors += 1
            elif line.kind != "RUN":
                v.in_flight_acks += 1
        if line.kind == "RUN":
            runs[line.ref].append(line.t0)
        elif line.kind in ACKED:
            v.acknowledged += line.kind == "ACK"
            v.found_stored += line.kind == "DUP"
            acked_ids.add(line.ref)
            job = jobs.get(line.ref)
            if job is None:
                v.lost.append((line.ref, line.op, "not stored"))
            elif job[0] != TYPE_OF[line.op] or job[2] != line.data:
                v.lost.append((line.ref, line.op, f"stored as {job[0]} {job[2]!r}, "
                               f"acknowledged as {line.data!r}"))
    for line in lines:   # the transitions, once every run is known
        job = jobs.get(line.ref)
        if line.kind == "CANCEL" and (job is None or job[1] != S.CANCELLED):
            v.broken.append((line.ref, "cancel acknowledged, state now "
                             f"{job and S.STATE_NAMES[job[1]]}"))
        elif line.kind == "FIN" and (job is None or job[1] != S.COMPLETED
                                     or job[3] != line.data):
            v.broken.append((line.ref, f"finish acknowledged, now {job and job[1:4]}"))
        elif line.kind == "RETRY" and not any(t >= line.t0 for t in runs[line.ref]):
            v.broken.append((line.ref, "retry acknowledged, but the job never ran again"))
    keys = collections.Counter(job[4] for job in jobs.values() if job[4])
    v.broken += [(key, f"{n} jobs hold one idempotency key") for key, n in keys.items()
                 if n > 1]
    states = collections.Counter()
    for job_id, (job_type, state, payload, result, _, _) in jobs.items():
        states[(job_type, S.STATE_NAMES[state])] += 1
        v.unacknowledged_stored += job_id not in acked_ids
        if state not in FINAL.get(job_type, ()):
            v.broken.append((job_id, f"{job_type} job left {S.STATE_NAMES[state]}"))
        if state == S.COMPLETED:
            if result != {"n": payload["n"]}:
                v.broken.append((job_id, f"completed with result {result!r}"))
            if not runs[job_id]:
                v.phantoms.append(job_id)
        if job_type != "flaky" and len(runs[job_id]) > 1:
            first, last = min(runs[job_id]), max(runs[job_id])
            explained = any(first <= k <= last for k in kills)
            (v.duplicates if explained else v.unexplained).append(
                (job_id, len(runs[job_id])))
    v.counts = dict(states)
    return v


def reconnect_times(lines: list[Line], ups: list[float], sources) -> dict[str, list]:
    """For each load process and each restart (`ups`: when the server accepted
    connections again), the seconds until its first call that succeeded
    (None: none before the next kill or the end)."""
    ok = collections.defaultdict(list)
    for line in lines:
        if line.kind in SUCCESS:
            ok[line.source].append(line.t0 if line.kind == "RUN" else line.t1)
    out = {}
    for source in sources:
        times = sorted(ok[source])
        out[source] = [next((t - up for t in times if t >= up), None) for up in ups]
    return out
