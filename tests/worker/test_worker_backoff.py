"""Exponential back-off with full jitter: bounds, cap, growth (gq.retry), and the
run_at a worker actually stores for a retried job.

Seeds come from the `rng` fixture (printed; replay with GQ_TEST_SEED=<seed>).
"""

from __future__ import annotations

import random
import statistics
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gq
from gq.errors import TemporaryError
from gq.jobs import Category
from gq.retry import backoff_delay, should_retry
from worker_harness import wait_state

SAMPLES = 2000


def ceiling(attempt, base, cap):
    return min(cap, base * 2 ** (attempt - 1))


@pytest.mark.parametrize("base,cap", [(1.0, 60.0), (0.5, 3600.0), (0.1, 0.1), (2.0, 3.0)])
def test_delays_within_full_jitter_bounds_and_mean_grows(rng, base, cap):
    means = []
    for attempt in range(1, 11):
        top = ceiling(attempt, base, cap)
        delays = [backoff_delay(attempt, base, cap, rng) for _ in range(SAMPLES)]
        assert all(0.0 <= d <= top for d in delays), (attempt, top, max(delays), rng)
        assert max(delays) <= cap
        # full jitter: uniform over the whole [0, top], not bunched at the top
        assert min(delays) < 0.05 * top and max(delays) > 0.95 * top, (attempt, rng)
        mean = statistics.fmean(delays)
        assert mean == pytest.approx(top / 2, rel=0.08), (attempt, mean, rng)
        means.append(mean)
    print(f"base={base} cap={cap} mean delay by attempt: "
          + ", ".join(f"{m:.3f}" for m in means))
    for attempt in range(2, 11):
        if ceiling(attempt, base, cap) > ceiling(attempt - 1, base, cap):
            assert means[attempt - 1] > means[attempt - 2], (attempt, means, rng)
    if ceiling(10, base, cap) > ceiling(1, base, cap):
        assert means[-1] > means[0], (means, rng)


def test_same_seed_same_delays(rng):
    seed = rng.seed_value
    a = [backoff_delay(n, 1.0, 100.0, random.Random(seed)) for n in range(1, 11)]
    b = [backoff_delay(n, 1.0, 100.0, random.Random(seed)) for n in range(1, 11)]
    assert a == b


def test_huge_attempt_numbers_stay_at_the_cap(rng):
    for attempt in (63, 64, 1000, 10**6):
        d = backoff_delay(attempt, 1.0, 30.0, rng)
        assert 0.0 <= d <= 30.0


@settings(max_examples=300, deadline=None)
@given(attempt=st.integers(1, 200), base=st.floats(0.001, 100.0), cap=st.floats(0.001, 1e5),
       seed=st.integers(0, 2**32 - 1))
def test_backoff_bounds_property(attempt, base, cap, seed):
    d = backoff_delay(attempt, base, cap, random.Random(seed))
    assert 0.0 <= d <= min(cap, base * 2.0 ** min(attempt - 1, 62))


def test_should_retry_rules():
    for cat in (Category.TEMPORARY, Category.TIMEOUT, Category.SYSTEM):
        assert should_retry(cat, 1, 3, True)
        assert should_retry(cat, 2, 3, True)
        assert not should_retry(cat, 3, 3, True)
    assert not should_retry(Category.PERMANENT, 1, 3, True)
    assert not should_retry(Category.SYSTEM, 1, 3, False)
    assert should_retry(Category.TEMPORARY, 1, 3, False)
    assert should_retry(Category.TIMEOUT, 1, 3, False)


def test_retried_job_run_at_matches_seeded_backoff(make_queue, start_worker, rng):
    """End to end: the worker's rng draws the delay; the stored run_at is the
    failure time plus exactly that delay, within [0, min(cap, base*2**(n-1))],
    and the next attempt does not start before run_at."""
    base, cap = 0.4, 0.5
    q = make_queue()
    raised_at = {}
    snapshots = {}

    def flaky(job):
        if job.attempt > 1:
            snapshots[job.attempt] = q.get(job.id)
        if job.attempt < 3:
            raised_at[job.attempt] = time.time()
            raise TemporaryError("try later")
        return "done"
    q.handler("flaky", backoff_base=base, backoff_cap=cap, max_attempts=3)(flaky)
    start_worker(q, rng=random.Random(rng.seed_value))
    expected = random.Random(rng.seed_value)
    delays = {1: expected.uniform(0.0, ceiling(1, base, cap)),
              2: expected.uniform(0.0, ceiling(2, base, cap))}
    print(f"seed {rng.seed_value}: expected delays {delays}")
    jid = q.submit("flaky")
    job = wait_state(q, jid, "completed")
    assert job.attempts == 3
    for failed_attempt in (1, 2):
        seen = snapshots[failed_attempt + 1]
        top = ceiling(failed_attempt, base, cap)
        assert seen.error.category is Category.TEMPORARY
        assert seen.error.attempt == failed_attempt
        delay = delays[failed_attempt]
        assert 0.0 <= delay <= top
        # run_at = (wall clock when the failure was recorded) + delay
        assert raised_at[failed_attempt] + delay <= seen.run_at, (failed_attempt, rng)
        assert seen.run_at <= seen.started_at + delay, (failed_attempt, rng)
        assert seen.run_at - raised_at[failed_attempt] <= top + 0.5, (failed_attempt, rng)
        # the retry did not run early
        assert seen.started_at >= seen.run_at, (failed_attempt, rng)


def test_queue_backoff_options_apply_when_handler_has_none(make_queue, start_worker, rng):
    q = make_queue(backoff_base=0.05, backoff_cap=0.06)
    seen = {}

    def flaky(job):
        if job.attempt == 1:
            seen["t"] = time.time()
            raise TemporaryError("again")
        seen["job"] = q.get(job.id)
    q.handler("flaky")(flaky)
    start_worker(q, rng=random.Random(rng.seed_value))
    jid = q.submit("flaky")
    wait_state(q, jid, "completed")
    assert seen["t"] <= seen["job"].run_at <= seen["job"].started_at
    assert seen["job"].run_at - seen["t"] <= 0.05 + 0.5
    assert isinstance(seen["job"].error, gq.JobError)
