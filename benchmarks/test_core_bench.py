"""Benchmarks of the compiled core against plain-Python equivalents.

    python -m pytest benchmarks/test_core_bench.py --benchmark-only -q

Groups pair each core operation with its baseline so they print side by side.
"""

import heapq
import random
import struct
import zlib

import pytest

from gq._core.codec import JobRecord, crc32c, decode_record
from gq._core.heap import ReadyHeap

N = 1_000_000


def make_jobs(n: int = N):
    """n ids and seeded random priorities 0-9 (also used by python -m benchmarks)."""
    rng = random.Random(1234)
    return [f"job-{i}" for i in range(n)], [rng.randrange(10) for _ in range(n)]


@pytest.fixture(scope="module")
def jobs():
    return make_jobs()


# --- heap: push 1M then pop them all, one Python call per operation -------------

def run_ready_heap(ids, prios):
    h = ReadyHeap()
    push, pop = h.push, h.pop
    n = len(ids)
    for i in range(n):
        push(ids[i], "email", prios[i], i)
    for _ in range(n):
        pop()
    assert len(h) == 0


def run_heapq(ids, prios):
    h = []
    heappush, heappop = heapq.heappush, heapq.heappop
    n = len(ids)
    for i in range(n):
        heappush(h, (-prios[i], i, ids[i]))
    for _ in range(n):
        heappop(h)
    assert not h


@pytest.mark.benchmark(group="heap push+pop 1M")
def test_heap_ready_heap(benchmark, jobs):
    benchmark.pedantic(run_ready_heap, args=jobs, rounds=3, iterations=1)


@pytest.mark.benchmark(group="heap push+pop 1M")
def test_heap_heapq(benchmark, jobs):
    benchmark.pedantic(run_heapq, args=jobs, rounds=3, iterations=1)


# --- codec: the core against a struct + zlib.crc32 encoder of the same layout ----

_FIXED = struct.Struct("<BiIIIQQ8d9I")      # state .. lengths (offset 7 to 140)
_ID = struct.Struct("<I")


def py_encode(r):
    parts = [r["id"].encode(), r["type"].encode(), r["payload"], r["result"], r["error"],
             r["extra"],
             _ID.pack(len(r["depends_on"])) + b"".join(
                 _ID.pack(len(b)) + b for b in (d.encode() for d in r["depends_on"])),
             r["key"].encode(), r["lease_owner"].encode()]
    body = _FIXED.pack(r["state"], r["priority"], r["attempts"], r["max_attempts"],
                       r["crashes"], r["seq"], r["ready_seq"], *r["times"],
                       *map(len, parts)) + b"".join(parts)
    return b"GQ\x01" + _ID.pack(zlib.crc32(body)) + body


def py_decode(data):
    if data[:3] != b"GQ\x01" or _ID.unpack_from(data, 3)[0] != zlib.crc32(data[7:]):
        raise ValueError("corrupted")
    f = _FIXED.unpack_from(data, 7)
    lengths, at, fields = f[15:], 140, []
    for n in lengths:
        fields.append(data[at:at + n])
        at += n
    deps, pos = [], 4
    for _ in range(_ID.unpack_from(fields[6])[0]):
        (n,) = _ID.unpack_from(fields[6], pos)
        deps.append(fields[6][pos + 4:pos + 4 + n].decode())
        pos += 4 + n
    return {"id": fields[0].decode(), "type": fields[1].decode(), "payload": fields[2],
            "result": fields[3], "error": fields[4], "extra": fields[5],
            "depends_on": tuple(deps), "key": fields[7].decode(),
            "lease_owner": fields[8].decode(), "state": f[0], "priority": f[1],
            "attempts": f[2], "max_attempts": f[3], "crashes": f[4], "seq": f[5],
            "ready_seq": f[6], "times": f[7:15]}


def typical(payload_size):
    payload = (b'{"to":"someone@example.com","body":"' + b"x" * payload_size)[:payload_size - 2] + b'"}'
    rec = JobRecord("01J9ZQ4V7X3M2K8N5P6R", "send_email", payload, 1, priority=5,
                    max_attempts=5, seq=123456, ready_seq=123460, created_at=1.7e9,
                    updated_at=1.7e9, timeout=30.0, depends_on=["01J9ZQ4V7X3M2K8N5P6Q"],
                    key="welcome:42")
    as_dict = {"id": rec.id, "type": rec.type, "payload": rec.payload, "result": b"",
               "error": b"", "extra": b"", "depends_on": rec.depends_on, "key": rec.key,
               "lease_owner": "", "state": rec.state, "priority": rec.priority,
               "attempts": 0, "max_attempts": 5, "crashes": 0, "seq": rec.seq,
               "ready_seq": rec.ready_seq,
               "times": (rec.created_at, rec.updated_at, rec.run_at, rec.started_at,
                         rec.finished_at, rec.timeout, rec.lifetime, rec.lease_deadline)}
    return rec, as_dict


SIZES = {"200B": 200, "64KiB": 64 * 1024}


@pytest.mark.parametrize("size", SIZES)
def test_encode_core(benchmark, size):
    benchmark.group = f"codec encode {size}"
    rec, _ = typical(SIZES[size])
    assert decode_record(benchmark(rec.encode)) == rec


@pytest.mark.parametrize("size", SIZES)
def test_encode_python(benchmark, size):
    benchmark.group = f"codec encode {size}"
    _, d = typical(SIZES[size])
    assert py_decode(benchmark(py_encode, d)) == d


@pytest.mark.parametrize("size", SIZES)
def test_decode_core(benchmark, size):
    benchmark.group = f"codec decode {size}"
    rec, _ = typical(SIZES[size])
    assert benchmark(decode_record, rec.encode()) == rec


@pytest.mark.parametrize("size", SIZES)
def test_decode_python(benchmark, size):
    benchmark.group = f"codec decode {size}"
    _, d = typical(SIZES[size])
    assert benchmark(py_decode, py_encode(d)) == d


# --- checksums of a 1 MiB payload ----------------------------------------------------

MIB = random.Random(7).randbytes(1 << 20)


@pytest.mark.benchmark(group="checksum 1MiB")
def test_crc32c_core(benchmark):
    benchmark(crc32c, MIB)


@pytest.mark.benchmark(group="checksum 1MiB")
def test_crc32_zlib(benchmark):
    benchmark(zlib.crc32, MIB)
