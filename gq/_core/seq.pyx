"""64-bit sequence numbers: the arithmetic and the 8-byte encoding.

The store keeps the counter in its meta table and rewrites it in every write
transaction that takes numbers; this module never touches storage. Big-endian,
so encoded numbers also sort correctly as LMDB keys.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer

cdef unsigned long long _U64_MAX = 0xFFFFFFFFFFFFFFFFULL


cdef bytes pack_u64_c(unsigned long long n):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 8)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    cdef int i
    for i in range(7, -1, -1):
        p[i] = n & 0xFF
        n >>= 8
    return out


cdef unsigned long long unpack_u64_c(const unsigned char *p) noexcept:
    cdef unsigned long long n = 0
    cdef int i
    for i in range(8):
        n = (n << 8) | p[i]
    return n


def pack_u64(unsigned long long n):
    """`n` as 8 bytes, big-endian."""
    return pack_u64_c(n)


def unpack_u64(data):
    """The inverse of `pack_u64`; `data` is any 8-byte buffer."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len != 8:
            raise ValueError(f"a u64 is 8 bytes, got {view.len}")
        return unpack_u64_c(<const unsigned char *>view.buf)
    finally:
        PyBuffer_Release(&view)


cdef class SequenceCounter:
    """Hands out increasing 64-bit numbers, starting after `last`."""

    def __init__(self, unsigned long long last=0):
        self._last = last

    @property
    def last(self):
        """The last number handed out (0 if none yet)."""
        return self._last

    cpdef unsigned long long take(self, unsigned long long n=1) except 0:
        """Reserve `n` numbers (last+1 .. last+n); return the first."""
        if n == 0:
            raise ValueError("take(n) needs n >= 1")
        if n > _U64_MAX - self._last:
            raise OverflowError(
                f"sequence exhausted: {self._last} + {n} passes 2**64-1")
        self._last += n
        return self._last - n + 1

    cpdef bytes encode(self):
        """`last` as 8 bytes, big-endian."""
        return pack_u64_c(self._last)

    @staticmethod
    def decode(data):
        """Restore a counter from `encode()` output (ValueError unless 8 bytes)."""
        return SequenceCounter(unpack_u64(data))

    def __repr__(self):
        return f"SequenceCounter(last={self._last})"

    def __eq__(self, other):
        if not isinstance(other, SequenceCounter):
            return NotImplemented
        return self._last == (<SequenceCounter>other)._last

    __hash__ = None
