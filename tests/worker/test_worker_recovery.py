"""Recovery with real `gq worker` processes and real signals: a frozen worker's job
runs elsewhere and its late outcome is refused; a killed worker's job is taken
over by a live one within seconds (the time is measured and printed); after a
reboot every job that was running is reclaimed at start."""

from __future__ import annotations

import os
import signal
import time

import gq
from gq.runtime.recovery import reclaim_after_reboot
from gq.store.lmdb.liveness import Liveness
from worker_harness import marker_path, wait_state, wait_until

VISIBILITY = "1.5"


def test_frozen_worker_loses_its_job_and_cannot_complete_it(data_dir, markers, spawn_worker):
    q = gq.Queue(data_dir)
    try:
        frozen = spawn_worker("app_long:q", env={"GQ_TEST_VISIBILITY": VISIBILITY})
        frozen.wait_started()
        jid = q.submit("sleep.sync", {"seconds": 1.0})
        wait_until(lambda: os.path.exists(marker_path(markers, jid, "started.1")), 15,
                   what="the first attempt to start")
        frozen.signal(signal.SIGSTOP)
        time.sleep(float(VISIBILITY) + 0.5)            # its lease runs out while frozen

        other = spawn_worker("app_long:q", env={"GQ_TEST_VISIBILITY": VISIBILITY})
        other.wait_for_log("Recovery completed, 1 jobs reclaimed")
        assert "lease of worker" in other.output
        job = wait_state(q, jid, "completed", timeout=20)
        assert job.attempts == 2 and job.result["pid"] == other.pid

        frozen.signal(signal.SIGCONT)                  # it wakes up, its handler returns
        wait_until(lambda: "refused" in frozen.output or "lease lost" in frozen.output, 15,
                   what="the frozen worker to learn its lease is gone")
        time.sleep(0.5)
        job = q.get(jid)
        assert job.state is gq.State.COMPLETED and job.attempts == 2
        assert job.result["pid"] == other.pid, "the stale completion was recorded"
        how = "refused" if "refused" in frozen.output else "stopped (lease lost)"
        print(f"stale attempt 1 of the frozen worker: {how}")
    finally:
        q.close()


def test_killed_worker_job_is_taken_over_by_a_live_worker(data_dir, markers, spawn_worker,
                                                           rng):
    """SIGKILL the worker running a job while another serves: the survivor notices
    the death (its lock file is free) at its next heartbeat and reclaims the job.
    Three trials at random phases; the death-to-reclaim times are printed."""
    q = gq.Queue(data_dir)
    took = []
    try:
        for trial in range(3):
            doomed = spawn_worker("app_long:q")
            doomed.wait_started()
            jid = q.submit("sleep", {"seconds": 2.0})
            wait_until(lambda: os.path.exists(marker_path(markers, jid, "started.1")), 15,
                       what="the first attempt to start")
            survivor = spawn_worker("app_long:q")
            survivor.wait_started()
            time.sleep(rng.uniform(0.0, 1.0))

            doomed.signal(signal.SIGKILL)
            died = time.monotonic()

            def reclaimed():
                job = q.get(jid)
                return job.state is not gq.State.RUNNING or job.attempts > 1
            wait_until(reclaimed, 15, interval=0.005, what="the job to be reclaimed")
            took.append(time.monotonic() - died)
            doomed.wait(10)
            job = wait_state(q, jid, "completed", timeout=20)
            assert job.attempts == 2 and job.result["pid"] == survivor.pid
            assert "from dead worker" in survivor.output
            survivor.terminate()
        print("death-to-reclaim: " + ", ".join(f"{t:.2f}s" for t in took) +
              f" (mean {sum(took) / len(took):.2f}s; deaths are noticed every heartbeat, 1 s)")
    finally:
        q.close()


def test_after_a_reboot_every_running_job_is_reclaimed_at_start(data_dir, markers,
                                                                 spawn_worker):
    """The store remembers the boot its last worker started under; the test fakes
    an earlier one. The job's owner even looks alive (its lock is held) and its
    lease runs for an hour: only the changed boot id can tell it is gone."""
    q = gq.Queue(data_dir)
    before = Liveness(data_dir, "worker-before-reboot")
    try:
        assert reclaim_after_reboot(q.store, "00000000-previous-boot") == []
        jid = q.submit("quick", {"n": 1})
        row = q.store.ready_after(0, 1)[0]
        q.store.claim([(jid, row[0])], owner="worker-before-reboot",
                      lease_deadline=time.monotonic() + 3600, now=time.time())

        worker = spawn_worker("app_long:q")
        worker.wait_for_log("Recovery completed, 1 jobs reclaimed")
        assert "worker-before-reboot" in worker.output
        assert "rebooted" in worker.output
        job = wait_state(q, jid, "completed", timeout=20)
        assert job.attempts == 2 and job.crashes == 0
        worker.terminate()

        again = spawn_worker("app_long:q")      # same boot now: nothing to reclaim
        again.wait_for_log("Recovery completed, 0 jobs reclaimed")
    finally:
        before.release()
        q.close()
