"""Byte layouts of the keys and values of the `index` table.

All indexes and the metadata share one LMDB table, told apart by a one-byte
prefix: a submit then copies two B-trees (jobs, index) per commit instead of
one per index, and each commit's fsync carries fewer pages. Ready entries have
the highest prefix, so fresh (ever larger) seqs are appended at the very end.

Every key is built so that LMDB's byte order is the order we want to scan in:
big-endian integers, a NUL after variable-length text (ids and types never
contain NUL; the queue refuses them).
"""

from __future__ import annotations

import struct

from gq._core.seq import pack_u64, unpack_u64

_READY_VALUE = struct.Struct(">i")
pack_priority = _READY_VALUE.pack
STATE_BYTES = tuple(bytes((state,)) for state in range(256))
_TIME = struct.Struct(">QQ")

# Prefixes: every one sorts below READY (b"r"); see the module docstring.
META = b"M"          # format, seq, tag, paused:<type>
COUNT_PREFIX = b"N"  # state + type -> n; next to META: one page for both per commit
LISTING = b"L"
DELAYED = b"D"
DEPENDENTS = b"P"
KEYS = b"K"
EXPIRY = b"X"
BLOCKED = b"B"
READY = b"r"

META_FORMAT = META + b"format"
META_SEQ = META + b"seq"
META_TAG = META + b"tag"
PAUSED = META + b"paused:"
META_BLOCKED = META + b"blocked"      # how many pending jobs are blocked
META_REQUEUED = META + b"requeued"    # scheduled jobs that already ran (retries)
PERIODIC = META + b"periodic:"        # schedule name -> last occurrence submitted
META_BOOT = META + b"boot"      # boot id of the machine the last worker started on
META_PROBE = META + b"probe"    # written by the circuit breaker's probe transaction

__all__ = [
    "pack_u64", "unpack_u64", "pack_priority", "STATE_BYTES",
    "META_FORMAT", "META_SEQ", "META_TAG", "PAUSED", "META_BOOT", "META_PROBE", "READY",
    "ready_key", "parse_ready_key", "idempotency_key",
    "ready_value", "parse_ready_value",
    "delayed_key", "parse_delayed_key",
    "listing_key", "listing_prefix",
    "COUNT_PREFIX", "count_key", "parse_count_key",
    "dependent_key", "dependents_prefix",
    "EXPIRY", "expiry_key", "parse_expiry_key",
    "BLOCKED", "blocked_key", "blocked_prefix",
    "META_BLOCKED", "META_REQUEUED", "PERIODIC",
]


# ready: seq -> priority + type + NUL + id.  Keyed by the seq the job got when it
# became ready, so the index doubles as a change feed: a dispatcher that has
# seen everything up to seq N only scans keys after N (see docs/storage.md).
def ready_key(seq: int) -> bytes:
    return READY + pack_u64(seq)


def parse_ready_key(key: bytes) -> int:
    return unpack_u64(bytes(key[1:]))


def ready_value(priority: int, job_type: str, job_id: str) -> bytes:
    return pack_priority(priority) + job_type.encode() + b"\0" + job_id.encode()


def parse_ready_value(value: bytes) -> tuple[int, str, str]:
    (priority,) = _READY_VALUE.unpack_from(value)
    job_type, _, job_id = bytes(value[4:]).partition(b"\0")
    return priority, job_type.decode(), job_id.decode()


# delayed: run_at (µs since the epoch) + seq -> id; scheduled jobs not yet due.
def delayed_key(run_at: float, seq: int) -> bytes:
    return DELAYED + _TIME.pack(max(0, int(run_at * 1_000_000)), seq)


def parse_delayed_key(key: bytes) -> tuple[float, int]:
    micros, seq = _TIME.unpack(bytes(key[1:]))
    return micros / 1_000_000, seq


# listing: type + NUL + state + seq -> id.  Serves list(type=), list(state=)
# (one prefix per type, merged by seq) and list(type=, state=).
def listing_key(job_type: str, state: int, seq: int) -> bytes:
    return LISTING + job_type.encode() + b"\0" + STATE_BYTES[state] + pack_u64(seq)


def listing_prefix(job_type: str, state: int | None = None) -> bytes:
    prefix = LISTING + job_type.encode() + b"\0"
    return prefix if state is None else prefix + bytes((state,))


# counts: prefix + state + type -> u64.  stats() and the depth limit read these
# instead of scanning.


def count_key(state: int, job_type: str) -> bytes:
    return COUNT_PREFIX + STATE_BYTES[state] + job_type.encode()


def parse_count_key(key: bytes) -> tuple[int, str]:
    key = bytes(key)
    n = len(COUNT_PREFIX)
    return key[n], key[n + 1:].decode()


# dependents: dependency id + NUL + dependent id -> b"".  Who waits on a job.
def dependent_key(dependency: str, dependent: str) -> bytes:
    return DEPENDENTS + dependency.encode() + b"\0" + dependent.encode()


def dependents_prefix(dependency: str) -> bytes:
    return DEPENDENTS + dependency.encode() + b"\0"


def idempotency_key(key: str) -> bytes:
    return KEYS + key.encode()


# expiry: lifetime deadline (µs since the epoch) + seq -> id.  Written when a job
# with a lifetime is submitted; the lifetime sweep reads only the expired head.
def expiry_key(deadline: float, seq: int) -> bytes:
    return EXPIRY + _TIME.pack(max(0, int(deadline * 1_000_000)), seq)


def parse_expiry_key(key: bytes) -> tuple[float, int]:
    micros, seq = _TIME.unpack(bytes(key[1:]))
    return micros / 1_000_000, seq


# blocked: pending job id + NUL + root id -> chain (JSON list, root first).  A
# pending job is blocked while it has at least one entry: `root` ended failed,
# dead_letter or cancelled somewhere up its dependency chain.
def blocked_key(job_id: str, root: str) -> bytes:
    return BLOCKED + job_id.encode() + b"\0" + root.encode()


def blocked_prefix(job_id: str) -> bytes:
    return BLOCKED + job_id.encode() + b"\0"
