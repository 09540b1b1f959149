"""JobRecord, its encoding, decode_record and crc32c (gq._core.codec)."""

import copy
import math
import os
import pickle
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gq._core import codec, states
from gq._core.codec import (FORMAT_VERSION, JobRecord, crc32c, decode_record,
                            record_format_version)
from gq.errors import RecordCorrupted
from reference import seeded_random

HEADER_SIZE = 140
U32, U64 = 2**32 - 1, 2**64 - 1
PATH_TO = {0: [], 1: [1], 2: [1, 2], 3: [1, 2, 3], 4: [1, 2, 4], 5: [5], 6: [6]}
FLOATS = ("created_at", "updated_at", "run_at", "started_at", "finished_at", "timeout",
          "lifetime", "lease_deadline")


def in_state(rec, state):
    for s in PATH_TO[state]:
        rec.move_to(s)
    return rec


def make(state=0, **kw):
    rec = JobRecord(kw.pop("id", "job-1"), kw.pop("type", "email"),
                    kw.pop("payload", b'{"to":"a@b.c"}'), 0, **kw)
    return in_state(rec, state)


text = st.text(max_size=40)
doubles = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def records(draw, max_payload=2000):
    rec = JobRecord(
        draw(text), draw(text), draw(st.binary(max_size=max_payload)), 0,
        priority=draw(st.integers(-2**31, 2**31 - 1)),
        attempts=draw(st.integers(0, U32)),
        max_attempts=draw(st.integers(0, U32)),
        crashes=draw(st.integers(0, U32)),
        seq=draw(st.integers(0, U64)),
        ready_seq=draw(st.integers(0, U64)),
        result=draw(st.binary(max_size=200)),
        error=draw(st.binary(max_size=200)),
        extra=draw(st.binary(max_size=200)),
        depends_on=draw(st.lists(text, max_size=6)),
        key=draw(text),
        lease_owner=draw(text),
        **{name: draw(doubles) for name in FLOATS},
    )
    return in_state(rec, draw(st.integers(0, 6)))


# --- round trips --------------------------------------------------------------

@given(records())
def test_round_trip(rec):
    data = rec.encode()
    back = decode_record(data)
    assert back == rec
    assert back.encode() == data
    assert back.state == rec.state
    assert type(back.depends_on) is tuple
    for name in FLOATS:   # bit-exact, NaN payloads and -0.0 included
        assert struct.pack("<d", getattr(back, name)) == struct.pack("<d", getattr(rec, name))


@given(st.binary(min_size=HEADER_SIZE, max_size=4000))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_encode_decode_encode_is_identity_on_valid_bytes(noise):
    rec = make(payload=noise, depends_on=["a", "ü" * 3], key="k")
    data = rec.encode()
    assert decode_record(data).encode() == data


def test_defaults_and_empty_fields():
    rec = JobRecord("", "", b"", states.PENDING)
    assert (rec.timeout, rec.lifetime, rec.lease_deadline, rec.run_at) == (-1.0, -1.0, 0.0, 0.0)
    assert (rec.result, rec.error, rec.extra, rec.key, rec.lease_owner) == (b"", b"", b"", "", "")
    assert rec.depends_on == ()
    data = rec.encode()
    assert len(data) == HEADER_SIZE + 4      # only the depends_on count
    assert decode_record(data) == rec


def test_big_payload():
    payload = os.urandom(1 << 20)
    rec = make(payload=payload)
    back = decode_record(rec.encode())
    assert back.payload == payload


def test_extremes():
    rec = make(priority=-2**31, attempts=U32, max_attempts=U32, crashes=U32, seq=U64,
               ready_seq=U64, created_at=math.inf, updated_at=-math.inf, run_at=math.nan,
               started_at=-0.0, finished_at=5e-324, timeout=1.7976931348623157e308)
    back = decode_record(rec.encode())
    assert back == rec
    assert math.copysign(1, back.started_at) == -1
    rec.priority = 2**31 - 1
    assert decode_record(rec.encode()).priority == 2**31 - 1


def test_layout_header():
    data = make(state=states.RUNNING, priority=-2).encode()
    assert data[:2] == b"GQ" and data[2] == FORMAT_VERSION == 1
    assert struct.unpack_from("<I", data, 3)[0] == crc32c(data[7:])
    assert data[7] == states.RUNNING
    assert struct.unpack_from("<i", data, 8)[0] == -2


# --- accepted inputs ------------------------------------------------------------

def test_decode_accepts_buffers():
    rec = make(depends_on=("x", "y"))
    data = rec.encode()
    assert decode_record(memoryview(data)) == rec
    assert decode_record(bytearray(data)) == rec
    big = b"xyz" + data + b"tail"
    assert decode_record(memoryview(big)[3:3 + len(data)]) == rec
    assert record_format_version(memoryview(data)) == 1


def test_decode_refuses_non_buffers():
    for bad in (None, 42, "GQ\x01", 1.5, [1, 2]):
        with pytest.raises(TypeError):
            decode_record(bad)
        with pytest.raises(TypeError):
            record_format_version(bad)
    data = make().encode()
    with pytest.raises(BufferError):   # non-contiguous
        decode_record(memoryview(data * 2)[::2])


# --- corruption ----------------------------------------------------------------

def small_record_bytes():
    return make(state=states.SCHEDULED, depends_on=["a", "bc"], key="k", lease_owner="w",
                result=b"r", error=b"e", extra=b"x", payload=b"{}").encode()


def test_every_single_byte_flip_is_detected():
    data = small_record_bytes()
    for i in range(len(data)):
        for mask in (0x01, 0xFF):
            bad = bytearray(data)
            bad[i] ^= mask
            with pytest.raises(RecordCorrupted) as info:
                decode_record(bytes(bad), job_id="j9")
            assert info.value.job_id == "j9", (i, mask)


def test_every_truncation_is_detected():
    data = small_record_bytes()
    for n in range(len(data)):
        with pytest.raises(RecordCorrupted):
            decode_record(data[:n])
    with pytest.raises(RecordCorrupted, match="trailing"):
        decode_record(data + b"\0")


def test_reasons():
    data = small_record_bytes()
    with pytest.raises(RecordCorrupted, match="truncated header"):
        decode_record(data[:50])
    with pytest.raises(RecordCorrupted, match="bad magic"):
        decode_record(b"XQ" + data[2:])
    with pytest.raises(RecordCorrupted, match="checksum mismatch") as info:
        decode_record(data[:-1] + bytes([data[-1] ^ 4]))
    assert info.value.job_id is None     # the id is not trusted when the checksum fails
    assert "run `gq check`" in str(info.value)


@pytest.mark.parametrize("version", [0, 2, 7, 255])
def test_other_format_version(version):
    data = bytearray(small_record_bytes())
    data[2] = version
    with pytest.raises(RecordCorrupted) as info:
        decode_record(bytes(data), "j")
    assert info.value.reason == (f"unsupported format version {version} "
                                 "(this build reads version 1)")
    assert record_format_version(bytes(data)) == version
    assert record_format_version(bytes(data[:3])) == version


def test_record_format_version_refuses():
    for bad in (b"", b"GQ", b"QG\x01"):
        with pytest.raises(RecordCorrupted):
            record_format_version(bad)


def reseal(data):
    """Recompute the checksum of (possibly forged) record bytes."""
    data = bytearray(data)
    struct.pack_into("<I", data, 3, crc32c(bytes(data[7:])))
    return bytes(data)


def test_invalid_state_with_valid_checksum_names_the_id():
    data = bytearray(small_record_bytes())
    data[7] = 9
    with pytest.raises(RecordCorrupted, match="invalid state number 9") as info:
        decode_record(reseal(data))
    assert info.value.job_id == "job-1"


def test_invalid_utf8_with_valid_checksum():
    rec = make(id="abc", type="xyz")
    data = bytearray(rec.encode())
    data[HEADER_SIZE + 3] = 0xFF           # first byte of the type
    with pytest.raises(RecordCorrupted, match="invalid utf-8 in type") as info:
        decode_record(reseal(data))
    assert info.value.job_id == "abc"
    data = bytearray(rec.encode())
    data[HEADER_SIZE] = 0xC3               # a dangling lead byte in the id
    with pytest.raises(RecordCorrupted, match="invalid utf-8 in id") as info:
        decode_record(reseal(data))
    assert info.value.job_id is None


@given(st.binary(max_size=600))
def test_garbage_never_crashes(data):
    for blob in (data, b"GQ\x01" + data, reseal(b"GQ\x01" + data) if len(data) >= 4 else data):
        try:
            rec = decode_record(blob)
        except RecordCorrupted:
            continue
        assert isinstance(rec, JobRecord)


@st.composite
def forged(draw):
    """Random variable fields behind a header whose lengths add up, correctly sealed."""
    body = draw(st.binary(max_size=300))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), min_size=8, max_size=8)))
    bounds = [0, *cuts, len(body)]
    lengths = [b - a for a, b in zip(bounds, bounds[1:])]
    header = bytearray(HEADER_SIZE)
    header[0:3] = b"GQ\x01"
    header[7] = draw(st.integers(0, 255))
    header[8:104] = draw(st.binary(min_size=96, max_size=96))
    struct.pack_into("<9I", header, 104, *lengths)
    return reseal(bytes(header) + body)


@given(forged())
@settings(max_examples=500)
def test_forged_records_decode_or_raise(data):
    try:
        rec = decode_record(data)
    except RecordCorrupted:
        return
    assert rec.encode() == data


def test_random_flips_seeded():
    rng, seed = seeded_random()
    for _ in range(300):
        rec = make(payload=rng.randbytes(rng.randrange(0, 300)),
                   depends_on=[str(rng.random()) for _ in range(rng.randrange(4))])
        data = bytearray(rec.encode())
        n = rng.randrange(1, 4)
        positions = rng.sample(range(len(data)), n)
        for p in positions:
            data[p] ^= rng.randrange(1, 256)
        try:
            decode_record(bytes(data))
        except RecordCorrupted:
            continue
        raise AssertionError(f"undetected corruption at {positions} (seed {seed})")


# --- crc32c --------------------------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    (b"", 0),
    (b"123456789", 0xE3069283),
    (b"\0" * 32, 0x8A9136AA),             # RFC 3720 B.4
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_crc32c_vectors(data, expected):
    assert crc32c(data) == expected
    assert codec._crc32c_table(data) == expected
    assert crc32c(memoryview(data)) == expected
    assert crc32c(bytearray(data)) == expected


@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_crc32c_incremental(a, b):
    assert crc32c(b, crc32c(a)) == crc32c(a + b)
    assert codec._crc32c_table(b, codec._crc32c_table(a)) == crc32c(a + b)


def test_crc32c_implementations_agree_on_every_path():
    rng, seed = seeded_random()
    buf = rng.randbytes(3 * 8192 * 2 + 3 * 256 * 2 + 100)
    mv = memoryview(buf)
    sizes = [0, 1, 7, 8, 9, 255, 256, 767, 768, 769, 1000, 3 * 8192 - 1, 3 * 8192,
             3 * 8192 + 3 * 256 + 17, 2 * 3 * 8192 + 5]
    for offset in range(8):                    # every alignment
        for n in sizes:
            chunk = mv[offset:offset + n]
            assert crc32c(chunk) == codec._crc32c_table(chunk), (offset, n, seed)
    assert codec._crc32c_impl() in ("sse4.2", "table")


def test_crc32c_refuses_non_buffers():
    for bad in (None, "abc", 12):
        with pytest.raises(TypeError):
            crc32c(bad)
    with pytest.raises(OverflowError):
        crc32c(b"", -1)
    with pytest.raises(OverflowError):
        crc32c(b"", 2**32)


# --- the record object ---------------------------------------------------------

def test_fields_round_trip_through_setters():
    rec = make()
    rec.id, rec.type, rec.key, rec.lease_owner = "i", "t", "k", "o"
    rec.payload, rec.result, rec.error, rec.extra = b"p", b"r", b"e", b"x"
    rec.depends_on = ["a", "b"]
    assert rec.depends_on == ("a", "b")
    rec.priority, rec.attempts, rec.seq = -5, 3, 2**64 - 1
    rec.run_at = 3                              # ints become floats
    assert rec.run_at == 3.0 and type(rec.run_at) is float
    assert decode_record(rec.encode()) == rec


@pytest.mark.parametrize("name,value,exc", [
    ("priority", 2**31, OverflowError), ("priority", -2**31 - 1, OverflowError),
    ("attempts", -1, OverflowError), ("attempts", 2**32, OverflowError),
    ("max_attempts", 2**32, OverflowError), ("crashes", -1, OverflowError),
    ("seq", 2**64, OverflowError), ("ready_seq", -1, OverflowError),
    ("priority", 1.5, TypeError), ("run_at", "soon", TypeError),
    ("id", None, TypeError), ("id", b"x", TypeError), ("type", 3, TypeError),
    ("key", None, TypeError), ("lease_owner", None, TypeError),
    ("payload", None, TypeError), ("payload", "{}", TypeError),
    ("payload", bytearray(b"{}"), TypeError), ("result", None, TypeError),
    ("error", "e", TypeError), ("extra", None, TypeError),
    ("depends_on", None, TypeError), ("depends_on", "ab", TypeError),
    ("depends_on", [1], TypeError), ("depends_on", ("a", None), TypeError),
])
def test_setters_refuse(name, value, exc):
    rec = make()
    before = rec.encode()
    with pytest.raises(exc):
        setattr(rec, name, value)
    assert rec.encode() == before


def test_constructor_refuses():
    with pytest.raises(TypeError):
        JobRecord(None, "t", b"", 0)
    with pytest.raises(TypeError):
        JobRecord("i", "t", "not bytes", 0)
    with pytest.raises(TypeError):
        JobRecord("i", "t", b"", 0, depends_on=[1])
    with pytest.raises(OverflowError):
        JobRecord("i", "t", b"", 0, priority=2**31)
    with pytest.raises(TypeError):
        JobRecord("i", "t", b"", 0, 5)          # options are keyword-only
    with pytest.raises(TypeError):
        JobRecord("i", "t", b"", 0, nope=1)


def test_str_subclasses_are_stored_as_str():
    class S(str):
        pass
    rec = make(id=S("x"), depends_on=[S("y")])
    rec.key = S("k")
    assert type(rec.id) is str and type(rec.key) is str
    assert decode_record(rec.encode()) == rec


def test_copy_is_shallow_and_independent():
    rec = make(state=states.RUNNING, depends_on=["a"], lease_owner="w1")
    dup = rec.copy()
    assert dup == rec and dup is not rec and dup.state == states.RUNNING
    assert dup.payload is rec.payload
    dup.priority = 9
    dup.move_to(states.COMPLETED)
    assert rec.priority == 0 and rec.state == states.RUNNING
    assert copy.copy(rec) == rec


def test_eq():
    rec = make(run_at=math.nan)
    assert rec == rec.copy()                  # NaN fields compare equal here
    assert rec != make(priority=1)
    assert rec != "not a record"
    for name in FLOATS:
        other = rec.copy()
        setattr(other, name, 123.25)
        assert other != rec, name
    with pytest.raises(TypeError):
        hash(rec)


def test_pickle_goes_through_the_codec():
    rec = make(state=states.DEAD_LETTER, depends_on=["a"])
    back = pickle.loads(pickle.dumps(rec))
    assert back == rec and back.state == states.DEAD_LETTER


def test_repr():
    r = repr(make(state=states.RUNNING, priority=3, seq=17, attempts=2))
    assert r == ("JobRecord(id='job-1', type='email', state='running', priority=3, "
                 "seq=17, attempts=2)")


def test_not_subclassable():
    with pytest.raises(TypeError):
        type("Sub", (JobRecord,), {})
