"""gq._core.pgarrays: the new jobs' columns as PostgreSQL binary arrays.

Checked two ways: against a naive decoder of the format written out here
(random batches, every column), and by the server itself, which must read each
packed array back as the values that went in.
"""

from __future__ import annotations

import struct
import time

import pytest

from gq._core.pgarrays import pack_new_jobs
from gq._core.plan import JobSpec

OIDS = {"text": 25, "int2": 21, "int4": 23, "bool": 16, "float8": 701, "bytea": 17}
COLUMNS = [("text", "id"), ("text", "type"), ("int2", "state"), ("int4", "priority"),
           ("int4", "max_attempts"), ("bool", "due"), ("float8", "now"), ("float8", "run_at"),
           ("float8", "timeout"), ("float8", "lifetime"), ("bytea", "payload"),
           ("text", "deps"), ("text", "key")]


class Planned:   # the fields of gq.store.postgres.store._Planned that are packed
    def __init__(self, spec, state, now):
        self.spec, self.state, self.now, self.id = spec, state, now, spec.id


def decode(data: bytes, kind: str):
    """PostgreSQL's binary array format, read the slow obvious way."""
    ndim, has_nulls, oid = struct.unpack_from(">iiI", data)
    assert oid == OIDS[kind]
    if ndim == 0:
        assert len(data) == 12
        return []
    assert ndim == 1
    n, lower = struct.unpack_from(">ii", data, 12)
    assert lower == 1
    pos, out = 20, []
    for _ in range(n):
        (length,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if length == -1:
            assert has_nulls
            out.append(None)
            continue
        raw = data[pos:pos + length]
        pos += length
        out.append({"text": lambda b: b.decode(), "bytea": bytes,
                    "int2": lambda b: struct.unpack(">h", b)[0],
                    "int4": lambda b: struct.unpack(">i", b)[0],
                    "bool": lambda b: struct.unpack(">?", b)[0],
                    "float8": lambda b: struct.unpack(">d", b)[0]}[kind](raw))
    assert pos == len(data)
    return out


def expected(planned):
    rows = []
    for p in planned:
        s = p.spec
        rows.append([p.id, s.type, p.state, s.priority, s.max_attempts,
                     p.state == 1 and s.run_at <= p.now, p.now, s.run_at, s.timeout,
                     s.lifetime, s.payload, "\x1f".join(s.depends_on), s.key])
    return [list(col) for col in zip(*rows)] if rows else [[] for _ in COLUMNS]


def random_batch(rng, n):
    now = time.time()
    return [Planned(JobSpec(
        rng.choice([None, f"id-{rng.randrange(10**6)}", "ünïcode-id"]),
        rng.choice(["email.send", "t", "täsk.名前", "x" * 200]),
        bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))),
        rng.randrange(-2**31, 2**31), rng.choice([0.0, now - 5, now + 3600]),
        tuple(f"dep-{rng.randrange(99)}" for _ in range(rng.choice([0, 0, 1, 3]))),
        rng.choice(["", "", f"key-{rng.randrange(99)}"]), rng.randrange(0, 2**31),
        rng.choice([-1.0, 0.5, 30.0]), rng.choice([-1.0, 86400.0])),
        rng.choice([0, 1, 1, 1]), now) for _ in range(n)]


@pytest.mark.parametrize("n", [0, 1, 64, 500])
def test_every_column_decodes_to_what_went_in(rng, n):
    planned = random_batch(rng, n)
    *columns, ring = pack_new_jobs(planned)
    assert len(columns) == len(COLUMNS)
    want = expected(planned)
    for (kind, name), data, values in zip(COLUMNS, columns, want):
        got = decode(data, kind)
        if not got and values:
            # an empty array: no row has a value (unnest pads it with NULLs)
            assert all(v is None or v == "" for v in values), name
            continue
        assert got == values, name
    assert ring == any(want[5])


def test_columns_without_values_go_as_empty_arrays():
    spec = JobSpec(None, "t", b"{}", 0, 0.0, (), "", 0, -1.0, -1.0)
    ids, *_, deps, keys, ring = pack_new_jobs([Planned(spec, 1, time.time())] * 3)
    for data in (ids, deps, keys):
        assert decode(data, "text") == [] and len(data) == 12
    assert ring is True


def test_a_max_attempts_past_int4_is_refused_not_wrapped():
    spec = JobSpec(None, "t", b"{}", 0, 0.0, (), "", 2**31, -1.0, -1.0)
    with pytest.raises(OverflowError, match="max_attempts"):
        pack_new_jobs([Planned(spec, 1, time.time())])


def test_the_server_reads_back_what_went_in(rng, postgres_url):
    import psycopg

    from gq.store.postgres.insert import INSERT_COLUMNS, register

    planned = random_batch(rng, 50)
    *columns, _ = pack_new_jobs(planned)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        register(conn)
        for (kind, name), (param, cls), data, values in zip(COLUMNS, INSERT_COLUMNS, columns,
                                                             expected(planned)):
            got = conn.execute(f"SELECT %(x)b::{kind}[]", {"x": cls(data)}).fetchone()[0]
            if got == [] and values:
                assert all(v is None or v == "" for v in values), name
                continue
            assert got == values, name
