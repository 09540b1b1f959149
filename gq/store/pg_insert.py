"""The new jobs of one PostgreSQL transaction, written by ONE statement.

Every job a write batch plans (gq.store.postgres._SubmitOp) goes in with a
single `INSERT ... SELECT FROM unnest(arrays)`, binary parameters packed here
(below). The same statement draws the jobs' seqs from `gq_seq`, in the order
planned, and answers the ids of the jobs, in that order (given ids as they are,
the others made from the seq), so a batch of plain submits costs one round trip
and no separate seq query.

A batch that is nothing but new jobs is this one statement, run on its own as
one implicit transaction (gq.store.postgres._Tx, `alone=True`). It then does the
rest of that transaction's work too: the NOTIFY (delivered at commit) when a
job is ready, and the jobs' count rows in gq_counts, once per (state, type) of
the batch, instead of the statement trigger's copy of every new row (a
transition table) and PL/pgSQL call. It sets the transaction-local `gq.counted`,
which the trigger's WHEN reads (schema v3, gq.store.pg_schema): inserts of any
other statement, and of an older gq, are still counted by the trigger. Inside a
longer transaction the statement leaves the counting to the trigger, so the
setting never outlives the statement that counted.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from itertools import chain, repeat

from psycopg.adapt import Dumper
from psycopg.pq import Format

from gq._core import states as S

SEP = chr(31)         # joins dependency ids for unnest (ids never hold control chars)

# A job's id when its submitter named none: the store's tag and its seq in hex,
# at least 12 digits (as f"{tag}-{seq:012x}" would be).
_NEW_ID = ("coalesce(i, %(tag)s || '-' || lpad(to_hex(q), greatest(12, length(to_hex(q))), "
           "'0'))")

_INSERT = (
    # n: the arrays as rows, each with its place `o` and a fresh seq (a CTE with a
    # volatile function is computed once, in the rows' order)
    "WITH n AS (SELECT u.*, nextval('gq_seq') AS q FROM unnest("
    "%(i)b::text[], %(t)b::text[], %(s)b::int2[], %(p)b::int4[], %(m)b::int4[], "
    "%(r)b::bool[], %(c)b::float8[], %(ra)b::float8[], %(tm)b::float8[], %(lt)b::float8[], "
    "%(pl)b::bytea[], %(d)b::text[], %(k)b::text[]) WITH ORDINALITY "
    "AS u(i, t, s, p, m, r, c, ra, tm, lt, pl, d, k, o)), "
    f"u AS (SELECT n.*, {_NEW_ID} AS id FROM n), "
    "ins AS (INSERT INTO gq_jobs (id, type, state, priority, max_attempts, seq, ready_seq, "
    "created_at, updated_at, run_at, timeout, lifetime, payload, depends_on, key) "
    "SELECT id, t, s, p, m, q, CASE WHEN r THEN q END, c, c, ra, tm, lt, pl, "
    "coalesce(string_to_array(d, chr(31)), '{{}}'), NULLIF(k, '') FROM u){counted} "
    "SELECT array_agg(id ORDER BY o){notify} FROM u")
_COUNTED = (", cnt AS (INSERT INTO gq_counts SELECT s, t, count(*) FROM u GROUP BY 1, 2)",
            ", set_config('gq.counted', 'on', true)")
INSERT = _INSERT.format(counted="", notify="")                   # in a transaction
ALONE = _INSERT.format(counted=_COUNTED[0], notify=_COUNTED[1])  # its own transaction
ALONE_AND_NOTIFY = _INSERT.format(counted=_COUNTED[0],
                                  notify=_COUNTED[1] + ", pg_notify(%(channel)s, '')")


def insert_planned(cur, planned, tag: str, alone: str | None = None) -> bool:
    """Write the planned jobs (gq.store.postgres._Planned) with one statement on
    `cur`, set each one's id and its callers' results. `alone`: the statement is
    its transaction (autocommit); it counts its jobs and, if one is ready,
    notifies the channel `alone` names. Returns whether a job is ready."""
    specs = [p.spec for p in planned]
    due = [p.state == S.SCHEDULED and s.run_at <= p.now for p, s in zip(planned, specs)]
    ring = True in due
    params = {
        "i": _texts([p.id for p in planned]), "t": _texts([s.type for s in specs]),
        "s": _INT2([p.state for p in planned]), "p": _INT4([s.priority for s in specs]),
        "m": _INT4([s.max_attempts for s in specs]), "r": _BOOL(due),
        "c": _FLOAT8([p.now for p in planned]), "ra": _FLOAT8([s.run_at for s in specs]),
        "tm": _FLOAT8([s.timeout for s in specs]), "lt": _FLOAT8([s.lifetime for s in specs]),
        "pl": _bytes([s.payload for s in specs]),
        "d": _texts([SEP.join(s.depends_on) for s in specs], empty=""),
        "k": _texts([s.key for s in specs], empty=""), "tag": tag}
    if alone is None:
        query = INSERT
    elif ring:
        params["channel"] = alone
        query = ALONE_AND_NOTIFY
    else:
        query = ALONE
    ids = cur.execute(query, params).fetchone()[0]
    for p, job_id in zip(planned, ids):
        p.id = job_id
        for results, i in p.slots:
            results[i] = job_id
    return ring


# -- the arrays, packed here in PostgreSQL's binary array format --------------------
#
# psycopg dumps a list parameter element by element in Python (~0.3 us each: a
# batch of 64 jobs, 13 arrays, spent ~140 us there); struct packs a whole array
# in one call. Header: ndim, has-nulls flag, element type oid, then length and
# lower bound of the one dimension; then each element as int32 length + bytes
# (length -1: NULL). A column whose every element is NULL (or `empty`) goes as
# an empty array: unnest pads a shorter array with NULLs.

_HEAD = struct.Struct(">iiIii")
_EMPTY_HEAD = struct.Struct(">iiI")
_LENGTH = struct.Struct(">i").pack
_NULL = _LENGTH(-1)


class PackedArray:
    """An array parameter already in binary form; `oid` is its array type's."""

    __slots__ = ("data",)
    oid = 0

    def __init__(self, data: bytes):
        self.data = data


class PackedArrayDumper(Dumper):
    format = Format.BINARY

    def __init__(self, cls, context=None):
        super().__init__(cls, context)
        self.oid = cls.oid

    def dump(self, obj):
        return obj.data


def _array_type(name: str, oid: int, elem_oid: int):
    return type(name, (PackedArray,), {"__slots__": (), "oid": oid, "elem_oid": elem_oid})


Int2Array = _array_type("Int2Array", 1005, 21)
Int4Array = _array_type("Int4Array", 1007, 23)
Float8Array = _array_type("Float8Array", 1022, 701)
BoolArray = _array_type("BoolArray", 1000, 16)
TextArray = _array_type("TextArray", 1009, 25)
ByteaArray = _array_type("ByteaArray", 1001, 17)
PACKED = (Int2Array, Int4Array, Float8Array, BoolArray, TextArray, ByteaArray)


def register(conn) -> None:
    """Let `conn` send the packed arrays (once per session)."""
    for cls in PACKED:
        conn.adapters.register_dumper(cls, PackedArrayDumper)


@lru_cache(maxsize=128)
def _elements(code: str, n: int) -> struct.Struct:
    return struct.Struct(">" + ("i" + code) * n)


def _fixed(cls, code: str, size: int):
    """A packer of non-NULL fixed-size values (struct `code`, `size` bytes)."""
    elem_oid = cls.elem_oid

    def pack(values: list):
        n = len(values)
        return cls(_HEAD.pack(1, 0, elem_oid, n, 1) + _elements(code, n).pack(
            *chain.from_iterable(zip(repeat(size, n), values))))
    return pack


_INT2 = _fixed(Int2Array, "h", 2)
_INT4 = _fixed(Int4Array, "i", 4)
_FLOAT8 = _fixed(Float8Array, "d", 8)
_BOOL = _fixed(BoolArray, "?", 1)


def _varlen(cls, items: list, empty=None):
    """bytes (or None: NULL) elements; all of them None or `empty`: an empty array."""
    if items.count(empty) == len(items):
        return cls(_EMPTY_HEAD.pack(0, 0, cls.elem_oid))
    n = len(items)
    if None in items:
        body = b"".join(_NULL if b is None else _LENGTH(len(b)) + b for b in items)
        return cls(_HEAD.pack(1, 1, cls.elem_oid, n, 1) + body)
    return cls(b"".join((_HEAD.pack(1, 0, cls.elem_oid, n, 1),
                         *chain.from_iterable(zip(map(_LENGTH, map(len, items)), items)))))


def _texts(items: list, empty=None):
    """str (or None) elements, sent UTF-8 (the writer sessions' client encoding)."""
    if items.count(empty) == len(items):
        return TextArray(_EMPTY_HEAD.pack(0, 0, 25))
    return _varlen(TextArray, [None if x is None else x.encode() for x in items])


def _bytes(items: list):
    return _varlen(ByteaArray, items)
