"""Abuse the compiled objects (py-lmdb's crash-test style): every misuse must end
in a clean Python exception, never a crash or a silently wrong answer."""

import tracemalloc
import weakref

import pytest

from gq._core import states
from gq._core.codec import JobRecord, crc32c, decode_record, record_format_version
from gq._core.heap import ReadyHeap
from gq._core.seq import SequenceCounter, pack_u64, unpack_u64
from gq.errors import InvalidTransition, RecordCorrupted
from reference import seeded_random


# --- ReadyHeap -----------------------------------------------------------------

def test_empty_heap():
    h = ReadyHeap()
    assert h.pop() is None and h.peek() is None
    assert h.pop_many(10**18) == [] and h.pop_many(0) == []
    assert len(h) == 0 and h.len_runnable() == 0
    assert h.remove("nope") is False
    assert "nope" not in h and h.count_type("nope") == 0
    assert not h.is_paused("nope") and h.paused_types() == frozenset()
    h.resume("nope")
    h.clear()
    assert repr(h).startswith("<ReadyHeap 0 entries")


def test_remove_twice():
    h = ReadyHeap()
    h.push("a", "t", 0, 0)
    assert h.remove("a") is True
    assert h.remove("a") is False
    assert h.pop() is None


def test_wrong_types():
    h = ReadyHeap()
    for bad in (None, 1, b"id", ["x"], object()):
        with pytest.raises(TypeError):
            h.push(bad, "t", 0, 0)
        with pytest.raises(TypeError):
            h.push("a", bad, 0, 0)
        with pytest.raises(TypeError):
            h.pause(bad)
        with pytest.raises(TypeError):
            h.count_type(bad)
        if bad is not None:
            with pytest.raises(TypeError):
                h.remove(bad)
        assert (bad in h) is False
    assert h.remove(None) is False
    with pytest.raises(TypeError):
        h.push("a", "t", 0)
    with pytest.raises(TypeError):
        h.pop_many("3")
    with pytest.raises(ValueError):
        h.pop_many(-1)
    with pytest.raises(OverflowError):
        h.pop_many(2**70)
    assert len(h) == 0 and h.pop() is None
    with pytest.raises(TypeError):
        type("Sub", (ReadyHeap,), {})


def test_str_subclass_lookup():
    class S(str):
        def __hash__(self):
            return 7
    h = ReadyHeap()
    h.push("abc", "t", 0, 0)
    assert S("abc") in h


def test_churn_and_dealloc_with_entries():
    rng, seed = seeded_random()
    for _ in range(20):
        h = ReadyHeap()
        for i in range(rng.randrange(2000)):
            op = rng.random()
            if op < 0.6:
                h.push(f"j{rng.randrange(300)}", f"t{rng.randrange(5)}", rng.randrange(-3, 3), i)
            elif op < 0.75:
                h.pop()
            elif op < 0.85:
                h.remove(f"j{rng.randrange(300)}")
            elif op < 0.9:
                h.pause(f"t{rng.randrange(5)}")
            elif op < 0.95:
                h.resume(f"t{rng.randrange(5)}")
            else:
                h.pop_many(rng.randrange(5))
        assert h.len_runnable() <= len(h), seed
        del h      # dealloc with entries left


# --- codec -----------------------------------------------------------------------

@pytest.mark.parametrize("bad", [None, 0, 3.5, "GQ\x01", object(), [71, 81, 1]])
def test_decode_non_buffers(bad):
    with pytest.raises(TypeError):
        decode_record(bad)
    with pytest.raises(TypeError):
        record_format_version(bad)
    with pytest.raises(TypeError):
        crc32c(bad)


@pytest.mark.parametrize("data", [b"", b"G", b"GQ", b"GQ\x01", b"\0" * 140, b"GQ\x01" + b"\xff" * 137,
                                  b"GQ\x01" + b"\xff" * 500])
def test_decode_short_and_hostile(data):
    with pytest.raises(RecordCorrupted):
        decode_record(data)


def test_hostile_lengths_do_not_allocate():
    # Lengths that add up to ~36 GiB; must fail on the size check, not on malloc.
    data = bytearray(b"GQ\x01" + bytes(137))
    data[104:140] = b"\xff" * 36
    with pytest.raises(RecordCorrupted, match="truncated record"):
        decode_record(bytes(data))


def test_record_abuse():
    rec = JobRecord("j", "t", b"{}", states.PENDING)
    with pytest.raises(AttributeError):
        rec.state = 2
    with pytest.raises(AttributeError):
        del rec.state
    with pytest.raises(NotImplementedError):   # Cython's answer for a property without deleter
        del rec.payload
    with pytest.raises(AttributeError):
        rec.unknown = 1                       # no __dict__
    with pytest.raises(InvalidTransition):
        rec.move_to(states.COMPLETED)
    with pytest.raises(ValueError):
        rec.move_to(99)
    with pytest.raises(TypeError):
        rec.move_to("running")
    with pytest.raises(TypeError):
        JobRecord()
    assert rec.state == states.PENDING
    assert decode_record(rec.encode()) == rec
    with pytest.raises(TypeError):
        weakref.ref(rec)


def test_records_do_not_leak():
    data = JobRecord("j", "t", b"{}" * 100, 0, depends_on=["a", "b"], key="k").encode()
    for _ in range(1000):                      # warm up allocator pools
        decode_record(data).copy().encode()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20_000):
            decode_record(data).copy().encode()
            try:
                decode_record(data[:-1])
            except RecordCorrupted:
                pass
        assert tracemalloc.get_traced_memory()[0] - before < 20_000
    finally:
        tracemalloc.stop()


# --- seq and states ----------------------------------------------------------------

def test_seq_abuse():
    with pytest.raises(TypeError):
        SequenceCounter.decode(None)
    with pytest.raises(TypeError):
        SequenceCounter.decode(12345678)
    with pytest.raises(ValueError):
        SequenceCounter.decode("12345678".encode() * 2)
    with pytest.raises(TypeError):
        pack_u64("1")
    with pytest.raises(TypeError):
        unpack_u64(8)
    with pytest.raises(ValueError):
        SequenceCounter().take(0)


def test_states_abuse():
    with pytest.raises(TypeError):
        states.can_transition(None, 1)
    with pytest.raises(ValueError):
        states.check_transition(-1, 0, "j")
    with pytest.raises(ValueError):
        states.check_initial(7)
