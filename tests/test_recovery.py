"""Recovery on a real store with real flocks: a dead instance's jobs come back;
a graceful exit's leftovers are not counted as crashes; the third crash
quarantines the job."""

from __future__ import annotations

import os
import time

import gq
from gq.recovery import Liveness, is_alive, recover


def claim_as(q, owner):
    rows = q.store.ready_after(0, 10)
    return q.store.claim([(rows[0][3], rows[0][0])], owner=owner,
                         lease_deadline=time.monotonic() + 300, now=time.time())[0]


def crash(liveness: Liveness) -> None:
    """What the kernel does when the process dies: the lock goes, the file stays."""
    os.close(liveness._fd)
    liveness._fd = None


def test_dead_owner_is_detected_and_its_job_reclaimed(queue, data_dir):
    jid = queue.submit("t")
    owner = Liveness(data_dir, "worker-a")
    claim_as(queue, "worker-a")
    assert is_alive(data_dir, "worker-a")
    assert recover(queue.store, data_dir) == []          # alive: left alone
    crash(owner)
    assert not is_alive(data_dir, "worker-a")
    assert recover(queue.store, data_dir) == [jid]
    info = queue.get(jid)
    assert (info.state, info.attempts, info.crashes) == (gq.State.SCHEDULED, 1, 1)


def test_graceful_exit_leftovers_are_not_crashes(queue, data_dir):
    jid = queue.submit("t")
    owner = Liveness(data_dir, "worker-b")
    claim_as(queue, "worker-b")
    owner.release(leftover=True)
    assert recover(queue.store, data_dir) == [jid]
    assert queue.get(jid).crashes == 0
    assert not os.path.exists(owner.path)     # recovery removed the spent lock file


def test_third_crash_quarantines(queue, data_dir):
    jid = queue.submit("t")
    for n in range(1, 4):
        owner = Liveness(data_dir, f"worker-{n}")
        claim_as(queue, f"worker-{n}")
        crash(owner)
        recover(queue.store, data_dir)
    info = queue.get(jid)
    assert info.state is gq.State.DEAD_LETTER and info.crashes == 3
    assert info.error.category is gq.Category.SYSTEM
    assert "keeps killing its worker" in info.error.message
    assert queue.retry(jid).state is gq.State.SCHEDULED   # an operator can retry it


def test_expired_lease_of_a_live_owner_is_reclaimed(queue, data_dir):
    jid = queue.submit("t")
    owner = Liveness(data_dir, "frozen")
    rows = queue.store.ready_after(0, 10)
    queue.store.claim([(rows[0][3], rows[0][0])], owner="frozen",
                      lease_deadline=time.monotonic() - 1, now=time.time())
    assert recover(queue.store, data_dir) == [jid]
    assert queue.get(jid).crashes == 0
    owner.release()
