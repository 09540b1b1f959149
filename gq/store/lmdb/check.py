"""`gq check`: verify every record's checksum and every index against the records.

Run as its own process (the CLI), never inside a worker: a scan that trips
over damage cannot take a worker down with it. Read-only: one read transaction.
"""

from __future__ import annotations

from collections import Counter

from gq._core import states as S
from gq._core.codec import decode_record
from gq.errors import RecordCorrupted
from gq.store.api import CheckReport
from gq.store.lmdb import keys as K


def check_records(txn, db, stored_counts, report: CheckReport) -> CheckReport:
    """Decode every record (checksum verified) and compare every index with them,
    in one read transaction `txn` (LMDBStore.check)."""
    expected_listing, expected_ready, expected_delayed = set(), set(), set()
    counts: Counter = Counter()
    requeued, pending = 0, set()
    with txn.cursor(db=db["jobs"]) as cur:
        for key, value in cur:
            job_id = bytes(key).decode(errors="replace")
            report.records += 1
            try:
                rec = decode_record(value, job_id)
            except RecordCorrupted as e:
                report.damaged.append((job_id, e.reason))
                continue
            if rec.id != job_id:
                report.damaged.append((job_id, f"record names another id {rec.id!r}"))
                continue
            expected_listing.add(K.listing_key(rec.type, rec.state, rec.seq))
            counts[(rec.state, rec.type)] += 1
            requeued += rec.state == S.SCHEDULED and rec.started_at > 0
            if rec.state == S.PENDING:
                pending.add(job_id)
            if rec.state == S.SCHEDULED:
                if rec.ready_seq:
                    expected_ready.add(K.ready_key(rec.ready_seq))
                else:
                    expected_delayed.add(K.delayed_key(rec.run_at, rec.seq))
    damaged_ids = {job_id for job_id, _ in report.damaged}
    found = {"listing": set(), "ready": set(), "delayed": set()}
    prefixes = {b"L": "listing", K.READY: "ready", b"D": "delayed"}
    blocked = set()
    with txn.cursor(db=db["index"]) as cur:
        for key, value in cur:
            key = bytes(key)
            if key[:1] == K.BLOCKED:   # blocked marks belong to pending jobs
                job_id = key[1:].partition(b"\0")[0].decode(errors="replace")
                blocked.add(job_id)
                if job_id not in pending and job_id not in damaged_ids:
                    report.index_problems.append(
                        f"blocked entry of job {job_id!r}, which is not pending")
                continue
            kind = prefixes.get(key[:1])
            if kind is None:
                continue
            found[kind].add(key)
            target = (bytes(value[4:]).partition(b"\0")[2] if kind == "ready"
                      else bytes(value)).decode(errors="replace")
            if target in damaged_ids:
                continue
            if txn.get(target.encode(), db=db["jobs"]) is None:
                report.index_problems.append(f"{kind} entry points at missing job {target!r}")
    for kind, expected in (("listing", expected_listing), ("ready", expected_ready),
                           ("delayed", expected_delayed)):
        for key in sorted(expected - found[kind]):
            report.index_problems.append(f"{kind} entry missing for a stored job "
                                         f"(key {key!r})")
    if not damaged_ids:
        for name, key, actual in (("requeued", K.META_REQUEUED, requeued),
                                  ("blocked", K.META_BLOCKED, len(blocked))):
            raw = txn.get(key, db=db["meta"])
            if (K.unpack_u64(raw) if raw else 0) != actual:
                report.index_problems.append(
                    f"{name} counter is {K.unpack_u64(raw) if raw else 0}, the records "
                    f"say {actual}")
    if not damaged_ids and stored_counts != dict(counts):
        report.index_problems.append(
            f"counts disagree with the records: stored {stored_counts}, "
            f"records {dict(counts)}")
    return report
