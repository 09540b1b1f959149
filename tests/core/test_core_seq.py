"""SequenceCounter and the u64 helpers (gq._core.seq)."""

import pytest
from hypothesis import given, strategies as st

from gq._core.seq import SequenceCounter, pack_u64, unpack_u64

U64_MAX = 2**64 - 1
u64 = st.integers(0, U64_MAX)


def test_take_and_last():
    c = SequenceCounter()
    assert c.last == 0
    assert c.take() == 1
    assert c.take() == 2
    assert c.take(10) == 3          # 3..12
    assert c.last == 12
    assert c.take() == 13


def test_start_after_last():
    c = SequenceCounter(41)
    assert c.take(2) == 42
    assert c.last == 43


def test_last_is_read_only():
    with pytest.raises(AttributeError):
        SequenceCounter().last = 5


def test_overflow():
    c = SequenceCounter(U64_MAX - 2)
    assert c.take(2) == U64_MAX - 1
    assert c.last == U64_MAX
    with pytest.raises(OverflowError):
        c.take()
    assert c.last == U64_MAX        # a refused take changes nothing
    c = SequenceCounter(U64_MAX - 2)
    with pytest.raises(OverflowError):
        c.take(3)
    assert c.last == U64_MAX - 2
    with pytest.raises(OverflowError):
        SequenceCounter(U64_MAX).take(U64_MAX)


def test_bad_arguments():
    with pytest.raises(ValueError):
        SequenceCounter().take(0)
    with pytest.raises(OverflowError):
        SequenceCounter().take(-1)
    with pytest.raises(OverflowError):
        SequenceCounter(-1)
    with pytest.raises(OverflowError):
        SequenceCounter(2**64)
    with pytest.raises(TypeError):
        SequenceCounter("1")


@given(u64)
def test_encode_decode(last):
    c = SequenceCounter(last)
    data = c.encode()
    assert data == last.to_bytes(8, "big")
    assert SequenceCounter.decode(data).last == last
    assert SequenceCounter.decode(memoryview(data)).last == last
    assert SequenceCounter.decode(bytearray(data)) == c


@given(u64, u64)
def test_pack_sorts_like_numbers(a, b):
    assert pack_u64(a) == a.to_bytes(8, "big")
    assert unpack_u64(pack_u64(a)) == a
    assert (pack_u64(a) < pack_u64(b)) == (a < b)


@pytest.mark.parametrize("data", [b"", b"\0" * 7, b"\0" * 9])
def test_decode_needs_8_bytes(data):
    with pytest.raises(ValueError):
        SequenceCounter.decode(data)
    with pytest.raises(ValueError):
        unpack_u64(data)


def test_pack_range():
    with pytest.raises(OverflowError):
        pack_u64(-1)
    with pytest.raises(OverflowError):
        pack_u64(2**64)
    with pytest.raises(TypeError):
        unpack_u64(None)
    with pytest.raises(TypeError):
        unpack_u64("12345678")


def test_repr_and_eq():
    assert repr(SequenceCounter(5)) == "SequenceCounter(last=5)"
    assert SequenceCounter(5) == SequenceCounter(5)
    assert SequenceCounter(5) != SequenceCounter(6)
    with pytest.raises(TypeError):
        hash(SequenceCounter())
