"""What the store holds after a cut, as the checker sees it: open the data dir
with gq (the open itself must succeed), run the full `gq check`
(LMDBStore.check, what the CLI runs), then read every record.

Runs in a forked child of the runner (LMDB must not be open in a process that
forks again), which pickles the result for the parent; a child that dies (a
damaged file that crashes the reader) is itself a finding.
"""

from __future__ import annotations

import orjson
import os
import pickle

import gq
from gq._core import states as S
from gq._core.codec import decode_record
from gq.errors import GQError


def take(data: str, out: str) -> None:
    snap = {"open_error": None, "damaged": [], "index_problems": [], "jobs": {},
            "bad_states": []}
    try:
        q = gq.Queue(data)
    except GQError as e:
        snap["open_error"] = f"{type(e).__name__}: {e}"
    else:
        try:
            report = q.store.check()
            snap["damaged"] = report.damaged
            snap["index_problems"] = report.index_problems
            snap["jobs"], snap["bad_states"] = _records(q.store)
        except GQError as e:
            snap["open_error"] = f"{type(e).__name__}: {e}"
        q.close()
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(snap, f)
    os.rename(tmp, out)


def _records(store):
    """{id: (type, state name, attempts, updated_at, payload)}; undecodable
    records are `gq check`'s to report, skipped here."""
    jobs, bad = {}, []
    with store._read() as txn, txn.cursor(db=store._db["jobs"]) as cur:  # noqa: SLF001
        for key, value in cur:
            job_id = bytes(key).decode(errors="replace")
            try:
                rec = decode_record(value, job_id)
            except GQError:
                continue
            if not 0 <= rec.state < len(S.STATE_NAMES):
                bad.append(job_id)
                continue
            jobs[job_id] = (rec.type, S.STATE_NAMES[rec.state], rec.attempts,
                            rec.updated_at, orjson.loads(rec.payload))
    return jobs, bad
