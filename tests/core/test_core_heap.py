"""ReadyHeap (gq._core.heap) against ReferenceHeap and heapq."""

import gc
import heapq
import sys
import tracemalloc

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gq._core.heap import ReadyHeap
from reference import ReferenceHeap, seeded_random

I64_MIN, I64_MAX, U64_MAX = -2**63, 2**63 - 1, 2**64 - 1

IDS = ["a", "b", "c", "d", "e", "f", "g", "job-1", "job-2", "ünï", "🦫", ""]
TYPES = ["email", "sms", "ö", "idle"]
priorities = st.one_of(st.integers(-3, 3), st.sampled_from([I64_MIN, I64_MAX, 0]))
seqs = st.one_of(st.integers(0, 12), st.sampled_from([0, U64_MAX, U64_MAX - 1]))


class HeapVsReference(RuleBasedStateMachine):
    """Random operations on both; every answer must agree (ties: any tied entry)."""

    def __init__(self):
        super().__init__()
        self.heap = ReadyHeap()
        self.ref = ReferenceHeap()

    def check_popped(self, got):
        best = self.ref.best()
        if not best:
            assert got is None
        else:
            assert got in best, (got, best)
            self.ref.remove(got[0])

    @rule(job_id=st.sampled_from(IDS), job_type=st.sampled_from(TYPES),
          priority=priorities, seq=seqs)
    def push(self, job_id, job_type, priority, seq):
        self.heap.push(job_id, job_type, priority, seq)
        self.ref.push(job_id, job_type, priority, seq)

    @rule()
    def pop(self):
        self.check_popped(self.heap.pop())

    @rule()
    def peek(self):
        got = self.heap.peek()
        best = self.ref.best()
        assert got in best if best else got is None
        if got is not None:     # peek and pop agree
            assert self.heap.pop() == got
            self.heap.push(*got)

    @rule(n=st.integers(0, 6))
    def pop_many(self, n):
        got = self.heap.pop_many(n)
        assert len(got) == min(n, self.ref.len_runnable())
        for item in got:
            self.check_popped(item)

    @rule(job_id=st.sampled_from(IDS))
    def remove(self, job_id):
        assert self.heap.remove(job_id) == self.ref.remove(job_id)

    @rule(job_type=st.sampled_from(TYPES))
    def pause(self, job_type):
        self.heap.pause(job_type)
        self.ref.pause(job_type)

    @rule(job_type=st.sampled_from(TYPES + ["never-seen"]))
    def resume(self, job_type):
        self.heap.resume(job_type)
        self.ref.resume(job_type)

    @precondition(lambda self: len(self.ref) > 8)
    @rule()
    def clear(self):
        self.heap.clear()
        self.ref.clear()

    @invariant()
    def same_counts(self):
        assert len(self.heap) == len(self.ref)
        assert self.heap.len_runnable() == self.ref.len_runnable()
        assert self.heap.paused_types() == self.ref.paused_types()
        for t in TYPES:
            assert self.heap.count_type(t) == self.ref.count_type(t)
            assert self.heap.is_paused(t) == self.ref.is_paused(t)
        for i in IDS:
            assert (i in self.heap) == (i in self.ref)


HeapVsReference.TestCase.settings = settings(max_examples=300, stateful_step_count=60,
                                             deadline=None)
TestHeapVsReference = HeapVsReference.TestCase


# --- ordering ------------------------------------------------------------------

def drain(heap):
    out = []
    while (item := heap.pop()) is not None:
        out.append(item)
    return out


def test_priority_then_fifo():
    h = ReadyHeap()
    h.push("low-1", "t", 0, 1)
    h.push("high-2", "t", 5, 2)
    h.push("low-3", "t", 0, 3)
    h.push("high-4", "t", 5, 4)
    h.push("mid-5", "u", 2, 5)
    assert [i for i, *_ in drain(h)] == ["high-2", "high-4", "mid-5", "low-1", "low-3"]


def test_negative_priorities():
    h = ReadyHeap()
    for i, p in enumerate([-1, -100, 0, 3, -5]):
        h.push(f"j{i}", "t", p, i)
    assert [p for _, _, p, _ in drain(h)] == [3, 0, -1, -5, -100]


def test_int64_and_uint64_extremes():
    h = ReadyHeap()
    h.push("max", "t", I64_MAX, U64_MAX)
    h.push("min", "t", I64_MIN, 0)
    h.push("max-early", "t", I64_MAX, 0)
    h.push("zero", "u", 0, U64_MAX)
    h.push("min-late", "u", I64_MIN, U64_MAX)
    assert drain(h) == [("max-early", "t", I64_MAX, 0), ("max", "t", I64_MAX, U64_MAX),
                        ("zero", "u", 0, U64_MAX), ("min", "t", I64_MIN, 0),
                        ("min-late", "u", I64_MIN, U64_MAX)]


def test_out_of_range_numbers_change_nothing():
    h = ReadyHeap()
    h.push("a", "t", 1, 1)
    for prio, seq in [(I64_MAX + 1, 1), (I64_MIN - 1, 1), (0, -1), (0, U64_MAX + 1)]:
        with pytest.raises(OverflowError):
            h.push("a", "t", prio, seq)
        with pytest.raises(OverflowError):
            h.push("new", "t", prio, seq)
    for prio, seq in [(1.5, 1), (1, 2.0), ("1", 1), (None, 1)]:
        with pytest.raises(TypeError):
            h.push("a", "t", prio, seq)
    assert len(h) == 1 and "new" not in h and h.peek() == ("a", "t", 1, 1)


def test_upsert_moves_type_and_priority():
    h = ReadyHeap()
    h.push("a", "t", 1, 1)
    h.push("b", "t", 2, 2)
    h.push("a", "u", 3, 7)
    assert len(h) == 2 and h.count_type("t") == 1 and h.count_type("u") == 1
    assert h.pop() == ("a", "u", 3, 7)
    h.push("b", "t", -1, 9)
    assert h.pop() == ("b", "t", -1, 9)
    assert h.pop() is None


def test_pause_skips_type_without_losing_entries():
    h = ReadyHeap()
    h.pause("t")                         # before any entry: remembered
    h.push("a", "t", 9, 1)
    h.push("b", "u", 0, 2)
    assert h.is_paused("t") and h.paused_types() == frozenset({"t"})
    assert len(h) == 2 and h.len_runnable() == 1
    assert h.pop() == ("b", "u", 0, 2)
    assert h.pop() is None and h.peek() is None and h.pop_many(5) == []
    assert "a" in h
    h.resume("t")
    assert h.pop() == ("a", "t", 9, 1)
    h.resume("never-seen")               # harmless
    assert not h.is_paused("never-seen") and h.count_type("never-seen") == 0


def test_clear_keeps_pauses():
    h = ReadyHeap()
    h.pause("t")
    for i in range(100):
        h.push(f"j{i}", "t" if i % 2 else "u", i % 7, i)
    h.clear()
    assert len(h) == 0 and h.len_runnable() == 0 and h.pop() is None
    assert h.paused_types() == frozenset({"t"})
    h.push("x", "u", 0, 0)
    assert h.pop() == ("x", "u", 0, 0)


def test_pop_many_order_and_bounds():
    h = ReadyHeap()
    for i in range(10):
        h.push(f"j{i}", "t", i % 3, i)
    got = h.pop_many(4)
    assert [i for i, *_ in got] == ["j2", "j5", "j8", "j1"]
    assert len(h.pop_many(10**12)) == 6
    assert h.pop_many(0) == [] and h.pop_many(3) == []


@pytest.mark.parametrize("n", [100_000])
def test_random_against_heapq(n):
    """Pushes, pops and removes in a random mix, against heapq + lazy deletion."""
    rng, seed = seeded_random()
    h, ref, live = ReadyHeap(), [], {}
    seq = 0
    for step in range(n):
        r = rng.random()
        if r < 0.55 or not live:
            seq += rng.randrange(1, 3)
            job_id = f"job-{rng.randrange(n)}"
            prio = rng.randrange(-5, 10)
            h.push(job_id, "t", prio, seq)
            live[job_id] = (prio, seq)
            heapq.heappush(ref, (-prio, seq, job_id))
        elif r < 0.9:
            got = h.pop()
            while True:
                negp, s, job_id = heapq.heappop(ref)
                if live.get(job_id) == (-negp, s):
                    break
            del live[job_id]
            assert got == (job_id, "t", -negp, s), f"step {step}, seed {seed}"
        else:
            job_id = f"job-{rng.randrange(n)}"
            assert h.remove(job_id) == (live.pop(job_id, None) is not None), \
                f"step {step}, seed {seed}"
        assert len(h) == len(live), f"step {step}, seed {seed}"


def test_many_types():
    rng, seed = seeded_random()
    h, ref = ReadyHeap(), ReferenceHeap()
    types = [f"type-{i}" for i in range(60)]
    for i in range(1500):
        args = (f"j{i}", rng.choice(types), rng.randrange(5), rng.randrange(10**6) * 10**6 + i)
        h.push(*args)
        ref.push(*args)
    for t in rng.sample(types, 20):
        h.pause(t)
        ref.pause(t)
    assert h.len_runnable() == ref.len_runnable()
    for t in rng.sample(types, 7):
        h.resume(t)
        ref.resume(t)
    assert h.pop_many(10**6) == ref.pop_many(10**6), f"seed {seed}"
    assert len(h) == len(ref)


# --- references and memory -----------------------------------------------------

def test_no_reference_leaks():
    job_id = "".join(["leak-", "check"])       # a fresh, non-interned object
    job_type = "".join(["leak-", "type"])
    base = sys.getrefcount(job_id)
    h = ReadyHeap()
    h.push(job_id, job_type, 1, 1)
    h.push(job_id, job_type, 2, 2)             # upsert keeps one reference
    assert sys.getrefcount(job_id) == base + 1
    item = h.pop()
    assert item[0] is job_id
    del item
    assert sys.getrefcount(job_id) == base
    h.push(job_id, job_type, 1, 1)
    h.remove(job_id)
    assert sys.getrefcount(job_id) == base
    h.push(job_id, job_type, 1, 1)
    h.clear()
    assert sys.getrefcount(job_id) == base
    h.push(job_id, job_type, 1, 1)
    del h
    gc.collect()
    assert sys.getrefcount(job_id) == base


def test_slots_are_reused():
    h = ReadyHeap()
    tracemalloc.start()
    try:
        for round_ in range(5):
            for i in range(20_000):
                h.push(f"j{i}", "t", i % 10, i)
            h.pop_many(20_000)
            if round_ == 1:
                after_two = tracemalloc.get_traced_memory()[0]
        assert tracemalloc.get_traced_memory()[0] <= after_two + 4096
    finally:
        tracemalloc.stop()


def test_overhead_per_entry():
    ids = [f"job-{i}" for i in range(200_000)]
    gc.collect()
    tracemalloc.start()
    try:
        h = ReadyHeap()
        before = tracemalloc.get_traced_memory()[0]
        for i, job_id in enumerate(ids):
            h.push(job_id, "t", i % 10, i)
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / len(ids)
    finally:
        tracemalloc.stop()
    assert per_entry < 100, per_entry
