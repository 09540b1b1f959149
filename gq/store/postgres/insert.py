"""The new jobs of one PostgreSQL transaction, written by ONE statement.

Every job a write batch plans (gq.store.postgres.store._SubmitOp) goes in with a
single `INSERT ... SELECT FROM unnest(arrays)`, binary parameters packed here
(below). The same statement draws the jobs' seqs from `gq_seq`, in the order
planned, and answers the ids of the jobs, in that order (given ids as they are,
the others made from the seq), so a batch of plain submits costs one round trip
and no separate seq query.

A batch that is nothing but new jobs is this one statement, run on its own as
one implicit transaction (gq.store.postgres.store._Tx, `alone=True`). It then does the
rest of that transaction's work too: the NOTIFY (delivered at commit) when a
job is ready, and the jobs' count rows in gq_counts, once per (state, type) of
the batch, instead of the statement trigger's copy of every new row (a
transition table) and PL/pgSQL call. It sets the transaction-local `gq.counted`,
which the trigger's WHEN reads (schema v3, gq.store.postgres.schema): inserts of any
other statement, and of an older gq, are still counted by the trigger. Inside a
longer transaction the statement leaves the counting to the trigger, so the
setting never outlives the statement that counted.
"""

from __future__ import annotations

from psycopg.adapt import Dumper
from psycopg.pq import Format

from gq._core.pgarrays import pack_new_jobs

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
    """Write the planned jobs (gq.store.postgres.store._Planned) with one statement on
    `cur`, set each one's id and its callers' results. `alone`: the statement is
    its transaction (autocommit); it counts its jobs and, if one is ready,
    notifies the channel `alone` names. Returns whether a job is ready."""
    *columns, ring = pack_new_jobs(planned)
    params = {name: cls(data) for (name, cls), data in zip(INSERT_COLUMNS, columns)}
    params["tag"] = tag
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


# -- the arrays: packed by gq._core.pgarrays (the format is described there) --------
#
# psycopg would dump a list parameter element by element in Python (~0.3 us each:
# a batch of 64 jobs, 13 arrays, spent ~140 us there); struct.pack of each whole
# array took ~80 us a batch; the compiled packer ~7 us. These classes carry the
# packed bytes and tell psycopg each array's type oid.

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


def _array_type(name: str, oid: int):
    return type(name, (PackedArray,), {"__slots__": (), "oid": oid})


# array type oids (their element types' oids are in gq._core.pgarrays)
Int2Array = _array_type("Int2Array", 1005)
Int4Array = _array_type("Int4Array", 1007)
Float8Array = _array_type("Float8Array", 1022)
BoolArray = _array_type("BoolArray", 1000)
TextArray = _array_type("TextArray", 1009)
ByteaArray = _array_type("ByteaArray", 1001)
PACKED = (Int2Array, Int4Array, Float8Array, BoolArray, TextArray, ByteaArray)

# The INSERT's parameters, in the order gq._core.pgarrays.pack_new_jobs packs them.
INSERT_COLUMNS = (("i", TextArray), ("t", TextArray), ("s", Int2Array), ("p", Int4Array),
            ("m", Int4Array), ("r", BoolArray), ("c", Float8Array), ("ra", Float8Array),
            ("tm", Float8Array), ("lt", Float8Array), ("pl", ByteaArray), ("d", TextArray),
            ("k", TextArray))


def register(conn) -> None:
    """Let `conn` send the packed arrays (once per session)."""
    for cls in PACKED:
        conn.adapters.register_dumper(cls, PackedArrayDumper)
