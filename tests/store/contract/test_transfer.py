"""insert_records (gq import): moved-in records stored as they are, all or none."""

from __future__ import annotations

import time

import pytest

from gq._core import states as S
from gq.errors import DuplicateJobId
from gq.store.records import restore_record

from .conftest import ready_ids, spec, submit


def test_records_keep_their_fields_and_a_due_job_is_ready(store):
    t = time.time()
    store.insert_records([
        restore_record("done", "a", b"{}", S.COMPLETED, attempts=2, result=b"r",
                       finished_at=t - 10, created_at=t - 100, updated_at=t - 10),
        restore_record("due", "a", b"[1]", S.SCHEDULED, created_at=t, updated_at=t),
        restore_record("later", "a", b"[2]", S.SCHEDULED, run_at=t + 3600, created_at=t,
                       updated_at=t)], now=t)
    done = store.get("done")
    assert (done.state, done.attempts, done.result, done.payload) == \
        (S.COMPLETED, 2, b"r", b"{}")
    assert ready_ids(store) == ["due"]
    assert store.next_due() == pytest.approx(t + 3600)
    assert store.counts() == {(S.COMPLETED, "a"): 1, (S.SCHEDULED, "a"): 2}
    assert store.check().ok


def test_all_or_nothing(store):
    (taken,) = submit(store, spec())
    t = time.time()
    with pytest.raises(DuplicateJobId):
        store.insert_records([
            restore_record("new", "a", b"{}", S.SCHEDULED, created_at=t, updated_at=t),
            restore_record(taken, "a", b"{}", S.SCHEDULED, created_at=t, updated_at=t)],
            now=t)
    assert store.get("new") is None
    assert store.counts() == {(S.SCHEDULED, "t"): 1}
