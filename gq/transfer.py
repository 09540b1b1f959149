"""The export format: move unfinished jobs between stores (LMDB <-> PostgreSQL).

The export is JSON lines. The first line is a header:
  {"gq_export": 1, "paused": [types...], "jobs": N}
then one job per line with every field of its record: state, attempts, crashes,
max_attempts, priority, times, payload, result and error (as JSON text, byte
for byte), depends_on, key. Exported: every job that is not finished (pending,
scheduled, running, dead_letter), plus the finished jobs those depend on, so a
pending job waits on exactly the same things in the new store.

The import stores the jobs as they were, in their original submission order
(new sequence numbers, order kept), all in one transaction or none. A job that
was running is imported as scheduled, ready at once, its attempt count kept:
its worker belonged to the old store. Stop the workers of the source (or pause
its types) before exporting: the export reads a live store job by job.

The commands over it, `gq export` and `gq import`, are in gq/cli/transfer.py.
"""

from __future__ import annotations

import time
from typing import IO, Iterable

import orjson

from gq._core import states as S
from gq.errors import ValidationError
from gq.store.records import restore_record

FORMAT = 1
UNFINISHED = (S.PENDING, S.SCHEDULED, S.RUNNING, S.DEAD_LETTER)
_NO_LIMIT = 1 << 62
_FLOATS = ("created_at", "updated_at", "run_at", "started_at", "finished_at", "timeout",
           "lifetime")
_INTS = ("priority", "attempts", "max_attempts", "crashes", "seq")


def _job_line(rec) -> dict:
    line = {"id": rec.id, "type": rec.type, "state": S.STATE_NAMES[rec.state]}
    for name in _INTS + _FLOATS:
        line[name] = getattr(rec, name)
    line.update(payload=rec.payload.decode(), result=rec.result.decode(),
                error=rec.error.decode(), depends_on=list(rec.depends_on), key=rec.key)
    return line


def export_jobs(store, out: IO[bytes]) -> int:
    """Write the export of `store` to `out`; returns the number of jobs."""
    jobs = {rec.id: rec for state in UNFINISHED
            for rec in store.list(state=state, limit=_NO_LIMIT)}
    wanted = {dep for rec in list(jobs.values()) for dep in rec.depends_on} - set(jobs)
    for dep in sorted(wanted):
        rec = store.get(dep)
        if rec is not None:
            jobs[dep] = rec
    ordered = sorted(jobs.values(), key=lambda r: r.seq)
    out.write(orjson.dumps({"gq_export": FORMAT, "paused": sorted(store.paused_types()),
                            "jobs": len(ordered)}) + b"\n")
    for rec in ordered:
        out.write(orjson.dumps(_job_line(rec)) + b"\n")
    return len(ordered)


def _record(line: dict, now: float):
    try:
        state = S.STATE_NAMES.index(line["state"])
        running = state == S.RUNNING
        fields = {name: int(line[name]) for name in _INTS}
        fields.update({name: float(line[name]) for name in _FLOATS})
        if running:   # its worker belonged to the old store: run it again
            state = S.SCHEDULED
            fields["run_at"] = 0.0
        return restore_record(
            line["id"], line["type"], line["payload"].encode(), state,
            result=line["result"].encode(), error=line["error"].encode(),
            depends_on=line["depends_on"], key=line["key"] or "", **fields)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ValidationError(f"job line is not a gq export record ({type(e).__name__}: "
                              f"{e})") from None


def read_export(lines: Iterable[bytes], now: float):
    """(paused types, records) of an export; ValidationError names a bad line."""
    lines = iter(lines)
    try:
        header = orjson.loads(next(lines))
    except StopIteration:
        raise ValidationError("the export is empty (no header line)") from None
    except orjson.JSONDecodeError as e:
        raise ValidationError(f"line 1 of the export is not JSON: {e}") from None
    if not isinstance(header, dict) or header.get("gq_export") != FORMAT:
        raise ValidationError(f"line 1 is not a gq export header of format {FORMAT}")
    records = []
    for n, raw in enumerate(lines, start=2):
        if not raw.strip():
            continue
        try:
            records.append(_record(orjson.loads(raw), now))
        except orjson.JSONDecodeError as e:
            raise ValidationError(f"line {n} of the export is not JSON: {e}") from None
        except ValidationError as e:
            raise ValidationError(f"line {n}: {e}") from None
    if len(records) != header.get("jobs", len(records)):
        raise ValidationError(f"the export is cut short: {len(records)} of "
                              f"{header['jobs']} jobs")
    return header.get("paused", []), records


def import_jobs(store, lines: Iterable[bytes]) -> int:
    """Store every job of an export in `store` (all or none); returns how many."""
    now = time.time()
    paused, records = read_export(lines, now)
    store.insert_records(records, now=now)
    for job_type in paused:
        store.set_paused(job_type, True)
    return len(records)

