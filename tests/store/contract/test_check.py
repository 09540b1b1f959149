"""check(): a read-only report, clean on a healthy store in every state."""

from __future__ import annotations

from .conftest import in_every_state


def test_an_empty_store_is_clean(store):
    report = store.check()
    assert report.ok and report.records == 0


def test_a_store_with_jobs_in_every_state_is_clean(store):
    jobs = in_every_state(store)
    report = store.check()
    assert report.ok, report
    assert report.records == len(jobs) + 1          # and the completed blocker
    assert (report.damaged, report.index_problems) == ([], [])
