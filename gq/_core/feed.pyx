"""Loading the store's ready feed into a ReadyHeap without a Python tuple per row.

A worker that starts on a store with a million ready jobs reads the whole feed
before its first dispatch (priority order needs every ready job in view), so
this loop is the bulk of a restart: in Python, parsing each row into a tuple
and pushing it cost ~3 µs; here it is the LMDB cursor step plus the push.

The row layout is the store's (gq/store/lmdb/keys.py, `ready_key`/`ready_value`):
key  = b"r" + seq (u64 big-endian)
value = priority (i32 big-endian) + type (UTF-8) + NUL + id (UTF-8).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.string cimport memchr

from gq._core.heap cimport ReadyHeap

cdef object _UNSEEN = object()


cdef inline uint64_t _u64_be(const unsigned char *p) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return v


cdef inline int32_t _i32_be(const unsigned char *p) noexcept:
    return <int32_t>((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) |
                     (<uint32_t>p[2] << 8) | <uint32_t>p[3])


def push_ready_rows(ReadyHeap heap, rows, handled, Py_ssize_t limit):
    """Push the rows of `rows` (an iterator of (key, value) bytes pairs from the
    ready index, in key order) whose type is in `handled` into `heap`, reading
    at most `limit` rows and stopping at the first key outside the ready prefix.
    Returns (rows read, last seq read; 0 if none)."""
    cdef Py_ssize_t n = 0, klen, vlen
    cdef const unsigned char *k
    cdef const char *v
    cdef const char *nul
    cdef uint64_t seq = 0
    cdef bytes key, value, type_bytes
    cdef dict types = {}          # type bytes -> the one str object (or None: not handled)
    cdef object job_type
    for key, value in rows:
        klen = PyBytes_GET_SIZE(key)
        k = <const unsigned char *>PyBytes_AS_STRING(key)
        if klen != 9 or k[0] != b'r':
            break
        vlen = PyBytes_GET_SIZE(value)
        v = PyBytes_AS_STRING(value)
        nul = <const char *>memchr(v + 4, 0, vlen - 4) if vlen > 4 else NULL
        if nul == NULL:
            raise ValueError(f"damaged ready-index row {key!r}: no type/id separator")
        seq = _u64_be(k + 1)
        n += 1
        type_bytes = v[4:nul - v]
        job_type = types.get(type_bytes, _UNSEEN)
        if job_type is _UNSEEN:
            job_type = type_bytes.decode()
            if job_type not in handled:
                job_type = None
            types[type_bytes] = job_type
        if job_type is not None:
            heap.push(PyUnicode_DecodeUTF8(nul + 1, vlen - (nul + 1 - v), NULL), job_type,
                      _i32_be(<const unsigned char *>v), seq)
        if n >= limit:
            break
    return n, seq
