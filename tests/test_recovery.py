"""Recovery on a real store with real flocks: a dead instance's jobs come back;
a graceful exit's leftovers are not counted as crashes; the third crash
quarantines the job."""

from __future__ import annotations

import logging
import os
import time

import gq
from gq.metrics import RECOVERY_JOBS_RECLAIMED, STUCK_JOBS_DETECTED
from gq.runtime.recovery import reclaim_after_reboot, recover
from gq.store.lmdb.liveness import Liveness, is_alive


def claim_as(q, owner):
    rows = q.store.ready_after(0, 10)
    return q.store.claim([(rows[0][3], rows[0][0])], owner=owner,
                         lease_deadline=time.monotonic() + 300, now=time.time())[0]


def crash(liveness: Liveness) -> None:
    """What the kernel does when the process dies: the lock goes, the file stays."""
    os.close(liveness._fd)
    liveness._fd = None


def counter(metric) -> float:
    return metric._value.get()


def test_dead_owner_is_detected_and_its_job_reclaimed(queue, data_dir, caplog):
    jid = queue.submit("t")
    owner = Liveness(data_dir, "worker-a")
    claim_as(queue, "worker-a")
    assert is_alive(data_dir, "worker-a")
    stuck, reclaimed = counter(STUCK_JOBS_DETECTED), counter(RECOVERY_JOBS_RECLAIMED)
    assert recover(queue.store) == []          # alive: left alone
    assert counter(STUCK_JOBS_DETECTED) == stuck
    crash(owner)
    assert not is_alive(data_dir, "worker-a")
    with caplog.at_level(logging.WARNING, logger="gq.recovery"):
        assert recover(queue.store) == [jid]
    info = queue.get(jid)
    assert (info.state, info.attempts, info.crashes) == (gq.State.SCHEDULED, 1, 1)
    assert counter(STUCK_JOBS_DETECTED) == stuck + 1
    assert counter(RECOVERY_JOBS_RECLAIMED) == reclaimed + 1
    [entry] = [r for r in caplog.records if r.name == "gq.recovery"]
    assert jid in entry.getMessage() and "worker-a" in entry.getMessage()
    assert entry.worker == "worker-a" and entry.job_id == jid


def test_a_changed_boot_id_reclaims_every_running_job_once(queue, data_dir):
    """Recorded in the store on the first start; a new boot id reclaims all
    running jobs, even those of owners whose lock looks held (lock files on a
    disk that outlived the machine's state) and whose lease has an hour to go."""
    assert reclaim_after_reboot(queue.store, "boot-1") == []
    jids = [queue.submit("t") for _ in range(3)]
    holder = Liveness(data_dir, "before")
    for _ in jids:
        claim_as(queue, "before")
    reclaimed = counter(RECOVERY_JOBS_RECLAIMED)
    assert reclaim_after_reboot(queue.store, "boot-1") == []       # same boot
    assert sorted(reclaim_after_reboot(queue.store, "boot-2")) == sorted(jids)
    assert reclaim_after_reboot(queue.store, "boot-2") == []       # recorded at once
    assert counter(RECOVERY_JOBS_RECLAIMED) == reclaimed + 3
    for jid in jids:
        info = queue.get(jid)
        assert (info.state, info.attempts, info.crashes) == (gq.State.SCHEDULED, 1, 0)
    holder.release()


def test_graceful_exit_leftovers_are_not_crashes(queue, data_dir):
    jid = queue.submit("t")
    owner = Liveness(data_dir, "worker-b")
    claim_as(queue, "worker-b")
    owner.release(leftover=True)
    assert recover(queue.store) == [jid]
    assert queue.get(jid).crashes == 0
    assert not os.path.exists(owner.path)     # recovery removed the spent lock file


def test_third_crash_quarantines(queue, data_dir):
    jid = queue.submit("t")
    for n in range(1, 4):
        owner = Liveness(data_dir, f"worker-{n}")
        claim_as(queue, f"worker-{n}")
        crash(owner)
        recover(queue.store)
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
    assert recover(queue.store) == [jid]
    assert queue.get(jid).crashes == 0
    owner.release()


def test_recovery_frees_the_reader_slot_of_a_killed_process(queue, data_dir):
    """A process killed inside a read transaction leaves its LMDB reader slot
    behind (pinning pages); the periodic recovery pass frees it."""
    import subprocess
    import sys
    code = (f"import gq, time\nq = gq.Queue({data_dir!r})\ntxn = q.store._env.begin()\n"
            "print('reading', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "reading\n"
    proc.kill()
    proc.wait()
    recover(queue.store)
    assert queue.store.reader_check() == 0    # already freed by the pass
