"""A damaged record does not take the worker down: the job is taken out of the
ready queue and logged, every other job completes, and `gq check` names it."""

from __future__ import annotations

import logging

import pytest

from worker_harness import wait_all

MARKER = "corrupt-me-0123456789"


@pytest.mark.lmdb_only("damages bytes of LMDB's data file; PostgreSQL keeps page "
                       "checksums and its own recovery")
def test_worker_survives_a_corrupted_record(make_queue, start_worker, caplog, flip_byte):
    q = make_queue()
    victim = q.submit("t", {"note": MARKER}, priority=9)    # first in line
    others = [q.submit("t", {"n": i}) for i in range(30)]
    flip_byte(q.path, MARKER, 2, 0x20)
    ran = []

    @q.handler("t")
    async def t(job):
        ran.append(job.payload)

    with caplog.at_level(logging.ERROR, logger="gq.store"):
        w = start_worker(q, concurrency=4)
        wait_all(q, others, "completed")
    assert {"note": MARKER} not in ran and len(ran) == 30
    assert any(victim in r.getMessage() and "corrupted" in r.getMessage()
               for r in caplog.records)
    report = q.store.check()
    assert [job_id for job_id, _ in report.damaged] == [victim]
    assert w is not None
