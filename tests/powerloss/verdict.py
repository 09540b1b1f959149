"""Classify one cut, as Jepsen's total-queue checker does, from the workload's
log (tests/powerloss/workload.py) and the snapshot taken after the cut.

- lost: an acknowledged submit missing or with another payload, or an
  acknowledged transition no longer in effect: a cancel that is not
  `cancelled`; an operator retry whose record was not written since (its
  `updated_at` is older than the call); a finish whose outcome is gone (for a
  final outcome: the record must be in exactly that state and attempt; for a
  retry: in it, or past that attempt). Only a job's last acknowledged
  transition is held to this, and a finish is excused when an operator retry
  of the job was made after it (that call may have landed unacknowledged).
- corrupt: `gq check` findings (a record failing its checksum, an index out of
  line with the records), a state outside the state machine, a store gq
  refuses to open.
- duplicated: a handler ran for an attempt the store no longer knows of (its
  claim was lost, so the same attempt would run again), or ran twice for one
  attempt, or ran again after its final outcome was acknowledged.
- rerun: a job running at the cut whose finish was never acknowledged: it
  runs again (allowed, and counted apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FINAL = {"completed", "failed", "dead_letter", "cancelled"}
EPS = 1e-3      # updated_at is the call's own clock reading, stored bit-exact


def payload(name: str) -> dict:
    return {"name": name, "blob": name * 7, "n": [len(name), 2**40]}


@dataclass
class Log:
    """The parsed log of one data dir (all its cuts so far)."""

    submits: dict = field(default_factory=dict)        # id -> (type, name)
    last: dict = field(default_factory=dict)           # id -> last acked transition
    retry_sent: dict = field(default_factory=dict)     # id -> index of the last "I retry"
    runs: dict = field(default_factory=dict)           # id -> [attempt, ...]
    acks: int = 0
    errors: int = 0        # caller-visible errors
    store_errors: int = 0  # persistence errors the store logged
    reopens: int = 0
    worker_errors: int = 0  # the worker's own writes that failed


def parse(text: str) -> Log:
    out = Log()
    for i, line in enumerate(text.splitlines()):
        kind, _, rest = line.partition(" ")
        f = rest.split()
        if kind == "S" and len(f) == 3:
            out.submits[f[0]] = (f[1], f[2])
            out.acks += 1
        elif kind == "X" and len(f) == 2:
            out.last[f[0]] = ("cancel", i, float(f[1]))
            out.acks += 1
        elif kind == "R" and len(f) == 2:
            out.last[f[0]] = ("retry", i, float(f[1]))
            out.acks += 1
        elif kind == "F" and len(f) == 4:
            out.last[f[0]] = ("finish", i, float(f[3]), int(f[1]), f[2])
            out.acks += 1
        elif kind == "I" and len(f) == 3 and f[1] == "retry":
            out.retry_sent[f[0]] = i
        elif kind == "RUN" and len(f) == 2:
            out.runs.setdefault(f[0], []).append(int(f[1]))
        elif kind == "E":
            out.errors += 1
        elif kind == "P":
            out.store_errors += 1
        elif kind == "O":
            out.reopens += 1
        elif kind == "W":
            out.worker_errors += 1
    return out


@dataclass
class Verdict:
    lost: set = field(default_factory=set)         # ("submit"|"transition", id)
    corrupt: list = field(default_factory=list)
    duplicated: set = field(default_factory=set)
    rerun: set = field(default_factory=set)
    problems: list = field(default_factory=list)   # the first few, in words


def judge(log: Log, snap: dict) -> Verdict:
    v = Verdict()
    if snap is None or snap.get("open_error"):
        why = "the checker died" if snap is None else snap["open_error"]
        v.corrupt.append(why)
        v.problems.append(f"store unreadable: {why}")
        v.lost.update(("submit", j) for j in log.submits)
        return v
    v.corrupt.extend(f"damaged {j}: {r}" for j, r in snap["damaged"])
    v.corrupt.extend(f"index: {p}" for p in snap["index_problems"])
    v.corrupt.extend(f"bad state: {j}" for j in snap["bad_states"])
    v.problems.extend(v.corrupt[:3])
    jobs = snap["jobs"]
    for jid, (jtype, name) in log.submits.items():
        rec = jobs.get(jid)
        if rec is None or rec[0] != jtype or rec[4] != payload(name):
            v.lost.add(("submit", jid))
            v.problems.append(f"acked submit {jid} ({name}) "
                              + ("missing" if rec is None else f"changed: {rec}"))
    for jid, t in log.last.items():
        rec = jobs.get(jid)
        if rec is None:
            continue      # counted above if its submit was acknowledged
        _, state, attempts, updated_at, _ = rec
        if t[0] == "cancel":
            ok = state == "cancelled"
        elif t[0] == "retry":
            ok = updated_at >= t[2] - EPS
        else:
            _, index, at, attempt, outcome = t
            if log.retry_sent.get(jid, -1) > index:
                continue
            ok = updated_at >= at - EPS and (
                (state == outcome and attempts == attempt) or
                (outcome not in FINAL and attempts > attempt))
        if not ok:
            v.lost.add(("transition", jid))
            v.problems.append(f"acked {t[0]} of {jid} {t} not in effect: {state} "
                              f"attempts={attempts} updated_at={updated_at}")
    for jid, runs in log.runs.items():
        rec = jobs.get(jid)
        if rec is None or jid in log.retry_sent:
            continue      # unacked and lost with the cut / attempts reset by a retry
        _, state, attempts, _, _ = rec
        t = log.last.get(jid)
        if len(set(runs)) != len(runs) or max(runs) > attempts or \
                (t and t[0] == "finish" and t[4] in FINAL and max(runs) > t[3]):
            v.duplicated.add(jid)
            v.problems.append(f"job {jid} ran attempts {runs}, the store says "
                              f"{state} attempts={attempts}")
        elif state == "running" and not (t and t[0] == "finish" and t[3] >= attempts):
            v.rerun.add(jid)
    return v
