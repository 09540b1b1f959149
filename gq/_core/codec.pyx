"""The job record and its binary encoding.

Layout of an encoded record (format version 1; integers little-endian)::

    offset size  field
         0    2  magic b"GQ"
         2    1  format version (1)
         3    4  CRC-32C of every byte from offset 7 to the end
         7    1  state
         8    4  priority           i32
        12    4  attempts           u32
        16    4  max_attempts       u32
        20    4  crashes            u32
        24    8  seq                u64
        32    8  ready_seq          u64
        40   64  created_at, updated_at, run_at, started_at, finished_at,
                 timeout, lifetime, lease_deadline      (8 x f64, bit-exact)
       104   36  byte lengths (9 x u32) of the variable fields below
       140    -  id, type, payload, result, error, extra, depends_on, key,
                 lease_owner, back to back
                 (text is UTF-8; depends_on is u32 count, then per id u32
                 length + UTF-8)

The checksum sits before everything it covers, so only the magic and the
version byte are outside it, and both must match exactly. Decoding checks
the magic, the version, the lengths against the buffer size, the checksum,
then the state number and UTF-8: any failure is RecordCorrupted, whatever
the input bytes. A newer build bumps the version byte; `record_format_version`
lets the store tell "written by a newer gq" from "damaged".
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_CheckExact,
                            PyBytes_FromStringAndSize, PyBytes_GET_SIZE)
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.math cimport isnan
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from gq._core.states cimport NUM_STATES, check_initial, check_transition

from gq.errors import RecordCorrupted
from gq._core.states import STATE_NAMES as _STATE_NAMES

FORMAT_VERSION = FORMAT_VERSION_C


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    object PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)


# CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) in C. On x86-64 the SSE4.2
# crc32 instruction, chosen at run time, runs three independent streams over
# long buffers and merges them with precomputed "shift by N zero bytes"
# tables (the instruction has 3-cycle latency, 1-cycle throughput).
# Elsewhere: slicing-by-8 tables. Both return the same values.
cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    static uint32_t gq_crc_table[8][256];
    static uint32_t gq_crc_long[4][256];   /* shift by GQ_CRC_LONG zero bytes */
    static uint32_t gq_crc_short[4][256];  /* shift by GQ_CRC_SHORT zero bytes */
    #define GQ_CRC_LONG 8192
    #define GQ_CRC_SHORT 256
    static int gq_crc_hw = 0;

    static uint32_t gq_crc_zeros_op(uint32_t crc, size_t n) {
        while (n--) crc = (crc >> 8) ^ gq_crc_table[0][crc & 0xff];
        return crc;
    }

    static void gq_crc_zeros_tables(uint32_t tab[4][256], size_t n) {
        uint32_t col[32];
        for (int i = 0; i < 32; i++) col[i] = gq_crc_zeros_op((uint32_t)1 << i, n);
        for (int k = 0; k < 4; k++)
            for (int b = 0; b < 256; b++) {
                uint32_t v = 0;
                for (int bit = 0; bit < 8; bit++)
                    if (b & (1 << bit)) v ^= col[8 * k + bit];
                tab[k][b] = v;
            }
    }

    static inline uint32_t gq_crc_shift(uint32_t tab[4][256], uint32_t crc) {
        return tab[0][crc & 0xff] ^ tab[1][(crc >> 8) & 0xff]
             ^ tab[2][(crc >> 16) & 0xff] ^ tab[3][crc >> 24];
    }

    static uint32_t gq_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) {
        crc = ~crc;
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        while (n && ((uintptr_t)p & 7)) { crc = (crc >> 8) ^ gq_crc_table[0][(crc ^ *p++) & 0xff]; n--; }
        while (n >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            w ^= crc;
            crc = gq_crc_table[7][w & 0xff] ^ gq_crc_table[6][(w >> 8) & 0xff]
                ^ gq_crc_table[5][(w >> 16) & 0xff] ^ gq_crc_table[4][(w >> 24) & 0xff]
                ^ gq_crc_table[3][(w >> 32) & 0xff] ^ gq_crc_table[2][(w >> 40) & 0xff]
                ^ gq_crc_table[1][(w >> 48) & 0xff] ^ gq_crc_table[0][w >> 56];
            p += 8; n -= 8;
        }
    #endif
        while (n--) crc = (crc >> 8) ^ gq_crc_table[0][(crc ^ *p++) & 0xff];
        return ~crc;
    }

    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <nmmintrin.h>
    #define GQ_CRC_HAVE_HW 1

    __attribute__((target("sse4.2")))
    static uint32_t gq_crc32c_hw(uint32_t crc32, const unsigned char *p, size_t n) {
        uint64_t crc = (uint32_t)~crc32;
        while (n && ((uintptr_t)p & 7)) { crc = _mm_crc32_u8((uint32_t)crc, *p++); n--; }
        /* Three streams of LONG, then of SHORT bytes, combined by shifting. */
        for (int pass = 0; pass < 2; pass++) {
            size_t blk = pass == 0 ? GQ_CRC_LONG : GQ_CRC_SHORT;
            while (n >= 3 * blk) {
                uint64_t c0 = crc, c1 = 0, c2 = 0, w0, w1, w2;
                const unsigned char *end = p + blk;
                do {
                    memcpy(&w0, p, 8); memcpy(&w1, p + blk, 8); memcpy(&w2, p + 2 * blk, 8);
                    c0 = _mm_crc32_u64(c0, w0);
                    c1 = _mm_crc32_u64(c1, w1);
                    c2 = _mm_crc32_u64(c2, w2);
                    p += 8;
                } while (p < end);
                uint32_t (*tab)[256] = pass == 0 ? gq_crc_long : gq_crc_short;
                crc = gq_crc_shift(tab, (uint32_t)c0) ^ (uint32_t)c1;
                crc = gq_crc_shift(tab, (uint32_t)crc) ^ (uint32_t)c2;
                p += 2 * blk; n -= 3 * blk;
            }
        }
        while (n >= 8) { uint64_t w; memcpy(&w, p, 8); crc = _mm_crc32_u64(crc, w); p += 8; n -= 8; }
        while (n--) crc = _mm_crc32_u8((uint32_t)crc, *p++);
        return ~(uint32_t)crc;
    }
    #else
    #define GQ_CRC_HAVE_HW 0
    static uint32_t gq_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
        return gq_crc32c_sw(crc, p, n);
    }
    #endif

    static void gq_crc_init(void) {
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t c = b;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
            gq_crc_table[0][b] = c;
        }
        for (int t = 1; t < 8; t++)
            for (int b = 0; b < 256; b++)
                gq_crc_table[t][b] = (gq_crc_table[t - 1][b] >> 8)
                                   ^ gq_crc_table[0][gq_crc_table[t - 1][b] & 0xff];
        gq_crc_zeros_tables(gq_crc_long, GQ_CRC_LONG);
        gq_crc_zeros_tables(gq_crc_short, GQ_CRC_SHORT);
    #if GQ_CRC_HAVE_HW
        __builtin_cpu_init();
        gq_crc_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    #endif
    }

    static inline uint32_t gq_crc32c(uint32_t crc, const unsigned char *p, size_t n) {
        return gq_crc_hw ? gq_crc32c_hw(crc, p, n) : gq_crc32c_sw(crc, p, n);
    }
    """
    void gq_crc_init() noexcept nogil
    int gq_crc_hw
    uint32_t gq_crc32c(uint32_t crc, const unsigned char *p, size_t n) noexcept nogil
    uint32_t gq_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) noexcept nogil

gq_crc_init()


cdef uint32_t crc32c_c(const unsigned char *p, size_t n, uint32_t value) noexcept nogil:
    return gq_crc32c(value, p, n)


cpdef unsigned int crc32c(data, unsigned int value=0) except? 0xFFFFFFFF:
    """CRC-32C of a bytes-like object; pass a previous result as `value` to continue it."""
    cdef Py_buffer view
    cdef uint32_t out
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    if view.len < 65536:
        out = gq_crc32c(value, <const unsigned char *>view.buf, view.len)
    else:
        with nogil:   # ~3 µs per 64 KiB: worth letting other threads run
            out = gq_crc32c(value, <const unsigned char *>view.buf, view.len)
    PyBuffer_Release(&view)
    return out


def _crc32c_impl():
    """Which CRC-32C implementation this process uses: "sse4.2" or "table"."""
    return "sse4.2" if gq_crc_hw else "table"


def _crc32c_table(data, unsigned int value=0):
    """CRC-32C with the portable tables (for tests of the fallback)."""
    cdef const unsigned char[::1] mv = data
    return gq_crc32c_sw(value, &mv[0] if mv.shape[0] else NULL, mv.shape[0])


# --- fixed-width little-endian access (gcc merges these into single loads/stores)

cdef inline void _put_u32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = v >> 24


cdef inline void _put_u64(unsigned char *p, uint64_t v) noexcept nogil:
    _put_u32(p, <uint32_t>(v & 0xFFFFFFFFu))
    _put_u32(p + 4, <uint32_t>(v >> 32))


cdef inline void _put_f64(unsigned char *p, double v) noexcept nogil:
    cdef uint64_t bits
    memcpy(&bits, &v, 8)
    _put_u64(p, bits)


cdef inline uint32_t _get_u32(const unsigned char *p) noexcept nogil:
    return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
            | (<uint32_t>p[3] << 24))


cdef inline uint64_t _get_u64(const unsigned char *p) noexcept nogil:
    return <uint64_t>_get_u32(p) | (<uint64_t>_get_u32(p + 4) << 32)


cdef inline double _get_f64(const unsigned char *p) noexcept nogil:
    cdef uint64_t bits = _get_u64(p)
    cdef double v
    memcpy(&v, &bits, 8)
    return v


cdef enum:
    OFF_CRC = 3
    OFF_STATE = 7
    OFF_PRIORITY = 8
    OFF_ATTEMPTS = 12
    OFF_MAX_ATTEMPTS = 16
    OFF_CRASHES = 20
    OFF_SEQ = 24
    OFF_READY_SEQ = 32
    OFF_DOUBLES = 40
    OFF_LENGTHS = 104
    N_VAR = 9           # variable fields, in the order of the layout table
    MAX_FIELD = 0xFFFFFFFF


# --- the record ---------------------------------------------------------------

cdef inline str _need_str(name, value):
    if type(value) is not str:
        if not isinstance(value, str):
            raise TypeError(f"JobRecord.{name} must be str, not {type(value).__name__}")
        value = str.__str__(value)   # plain str: encode and compare stay simple
    return <str>value


cdef inline bytes _need_bytes(name, value):
    if type(value) is not bytes:
        raise TypeError(f"JobRecord.{name} must be bytes, not {type(value).__name__}")
    return <bytes>value


cdef inline object _need_int(name, value):
    if not isinstance(value, int):
        raise TypeError(f"JobRecord.{name} must be int, not {type(value).__name__}")
    return value


cdef tuple _need_ids(value):
    if isinstance(value, (str, bytes)):
        raise TypeError("JobRecord.depends_on must be a sequence of job ids, "
                        f"not a single {type(value).__name__}")
    cdef tuple ids = tuple(value)
    cdef Py_ssize_t i
    for i in range(len(ids)):
        if type(ids[i]) is not str:
            if not isinstance(ids[i], str):
                raise TypeError("JobRecord.depends_on holds job ids (str), found "
                                f"{type(ids[i]).__name__} at index {i}")
            return tuple([_need_str("depends_on", x) for x in ids])
    return ids


cdef inline bint _same_double(double a, double b) noexcept:
    return a == b or (isnan(a) and isnan(b))


# Holds only str, bytes and a tuple of str: it can never be part of a cycle,
# so it stays out of the cyclic GC (smaller, and no GC passes over records).
@cython.final
@cython.no_gc
cdef class JobRecord:
    """One job, as stored. `state` changes only through `move_to`."""

    def __init__(self, id, type, payload, int state, *, priority=0, attempts=0,
                 max_attempts=0, crashes=0, seq=0, ready_seq=0,
                 double created_at=0.0, double updated_at=0.0,
                 double run_at=0.0, double started_at=0.0, double finished_at=0.0,
                 double timeout=-1.0, double lifetime=-1.0, double lease_deadline=0.0,
                 result=b"", error=b"", extra=b"", depends_on=(), key="",
                 lease_owner=""):
        self._id = _need_str("id", id)
        check_initial(state, self._id)   # a new job starts pending or scheduled
        self._type = _need_str("type", type)
        self._payload = _need_bytes("payload", payload)
        self.state = state
        self._priority = _need_int("priority", priority)
        self._attempts = _need_int("attempts", attempts)
        self._max_attempts = _need_int("max_attempts", max_attempts)
        self._crashes = _need_int("crashes", crashes)
        self._seq = _need_int("seq", seq)
        self._ready_seq = _need_int("ready_seq", ready_seq)
        self.created_at = created_at
        self.updated_at = updated_at
        self.run_at = run_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.timeout = timeout
        self.lifetime = lifetime
        self.lease_deadline = lease_deadline
        self._result = _need_bytes("result", result)
        self._error = _need_bytes("error", error)
        self._extra = _need_bytes("extra", extra)
        self._depends_on = _need_ids(depends_on)
        self._key = _need_str("key", key)
        self._lease_owner = _need_str("lease_owner", lease_owner)

    # -- integer fields (range-checked by the C conversion: OverflowError) -----

    @property
    def priority(self):
        return self._priority

    @priority.setter
    def priority(self, value):
        self._priority = _need_int("priority", value)

    @property
    def attempts(self):
        return self._attempts

    @attempts.setter
    def attempts(self, value):
        self._attempts = _need_int("attempts", value)

    @property
    def max_attempts(self):
        return self._max_attempts

    @max_attempts.setter
    def max_attempts(self, value):
        self._max_attempts = _need_int("max_attempts", value)

    @property
    def crashes(self):
        return self._crashes

    @crashes.setter
    def crashes(self, value):
        self._crashes = _need_int("crashes", value)

    @property
    def seq(self):
        return self._seq

    @seq.setter
    def seq(self, value):
        self._seq = _need_int("seq", value)

    @property
    def ready_seq(self):
        return self._ready_seq

    @ready_seq.setter
    def ready_seq(self, value):
        self._ready_seq = _need_int("ready_seq", value)

    # -- object fields ---------------------------------------------------------

    @property
    def id(self):
        return self._id

    @id.setter
    def id(self, value):
        self._id = _need_str("id", value)

    @property
    def type(self):
        return self._type

    @type.setter
    def type(self, value):
        self._type = _need_str("type", value)

    @property
    def payload(self):
        return self._payload

    @payload.setter
    def payload(self, value):
        self._payload = _need_bytes("payload", value)

    @property
    def result(self):
        return self._result

    @result.setter
    def result(self, value):
        self._result = _need_bytes("result", value)

    @property
    def error(self):
        return self._error

    @error.setter
    def error(self, value):
        self._error = _need_bytes("error", value)

    @property
    def extra(self):
        return self._extra

    @extra.setter
    def extra(self, value):
        self._extra = _need_bytes("extra", value)

    @property
    def depends_on(self):
        return self._depends_on

    @depends_on.setter
    def depends_on(self, value):
        self._depends_on = _need_ids(value)

    @property
    def key(self):
        return self._key

    @key.setter
    def key(self, value):
        self._key = _need_str("key", value)

    @property
    def lease_owner(self):
        return self._lease_owner

    @lease_owner.setter
    def lease_owner(self, value):
        self._lease_owner = _need_str("lease_owner", value)

    # -- the gate --------------------------------------------------------------

    cpdef move_to(self, int new_state):
        """Change state, if the lifecycle allows it (else InvalidTransition)."""
        check_transition(self.state, new_state, self._id)
        self.state = new_state

    # -- encoding --------------------------------------------------------------

    cpdef bytes encode(self):
        """The record as bytes (layout at the top of this module)."""
        cdef const char *ptr[N_VAR]
        cdef Py_ssize_t size[N_VAR]
        cdef Py_ssize_t ndeps = PyTuple_GET_SIZE(self._depends_on)
        cdef Py_ssize_t deps_size = 4, total = HEADER_SIZE, dlen, i, j
        cdef const char *dptr
        cdef object dep

        ptr[0] = PyUnicode_AsUTF8AndSize(self._id, &size[0])
        ptr[1] = PyUnicode_AsUTF8AndSize(self._type, &size[1])
        ptr[2] = PyBytes_AS_STRING(self._payload); size[2] = PyBytes_GET_SIZE(self._payload)
        ptr[3] = PyBytes_AS_STRING(self._result); size[3] = PyBytes_GET_SIZE(self._result)
        ptr[4] = PyBytes_AS_STRING(self._error); size[4] = PyBytes_GET_SIZE(self._error)
        ptr[5] = PyBytes_AS_STRING(self._extra); size[5] = PyBytes_GET_SIZE(self._extra)
        ptr[6] = NULL   # depends_on: written below
        for i in range(ndeps):
            dep = <object>PyTuple_GET_ITEM(self._depends_on, i)
            PyUnicode_AsUTF8AndSize(dep, &dlen)   # cached on the str for the copy below
            if dlen > MAX_FIELD:
                raise OverflowError("a depends_on id is longer than 4 GiB")
            deps_size += 4 + dlen
        size[6] = deps_size
        ptr[7] = PyUnicode_AsUTF8AndSize(self._key, &size[7])
        ptr[8] = PyUnicode_AsUTF8AndSize(self._lease_owner, &size[8])
        for i in range(N_VAR):
            if size[i] > MAX_FIELD:
                raise OverflowError("a record field is longer than 4 GiB")
            total += size[i]

        cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
        cdef unsigned char *buf = <unsigned char *>PyBytes_AS_STRING(out)
        buf[0] = b'G'
        buf[1] = b'Q'
        buf[2] = FORMAT_VERSION_C
        buf[OFF_STATE] = <uint8_t>self.state
        _put_u32(buf + OFF_PRIORITY, <uint32_t>self._priority)
        _put_u32(buf + OFF_ATTEMPTS, self._attempts)
        _put_u32(buf + OFF_MAX_ATTEMPTS, self._max_attempts)
        _put_u32(buf + OFF_CRASHES, self._crashes)
        _put_u64(buf + OFF_SEQ, self._seq)
        _put_u64(buf + OFF_READY_SEQ, self._ready_seq)
        _put_f64(buf + OFF_DOUBLES, self.created_at)
        _put_f64(buf + OFF_DOUBLES + 8, self.updated_at)
        _put_f64(buf + OFF_DOUBLES + 16, self.run_at)
        _put_f64(buf + OFF_DOUBLES + 24, self.started_at)
        _put_f64(buf + OFF_DOUBLES + 32, self.finished_at)
        _put_f64(buf + OFF_DOUBLES + 40, self.timeout)
        _put_f64(buf + OFF_DOUBLES + 48, self.lifetime)
        _put_f64(buf + OFF_DOUBLES + 56, self.lease_deadline)

        cdef unsigned char *w = buf + HEADER_SIZE
        for i in range(N_VAR):
            _put_u32(buf + OFF_LENGTHS + 4 * i, <uint32_t>size[i])
            if i == 6:
                _put_u32(w, <uint32_t>ndeps)
                w += 4
                for j in range(ndeps):
                    dptr = PyUnicode_AsUTF8AndSize(
                        <object>PyTuple_GET_ITEM(self._depends_on, j), &dlen)
                    _put_u32(w, <uint32_t>dlen)
                    memcpy(w + 4, dptr, dlen)
                    w += 4 + dlen
            else:
                memcpy(w, ptr[i], size[i])
                w += size[i]

        _put_u32(buf + OFF_CRC, gq_crc32c(0, buf + OFF_STATE, total - OFF_STATE))
        return out

    # -- the rest --------------------------------------------------------------

    cpdef JobRecord copy(self):
        """A shallow copy, same state (no gate: nothing changes)."""
        cdef JobRecord r = JobRecord.__new__(JobRecord)
        r._id = self._id
        r._type = self._type
        r._key = self._key
        r._lease_owner = self._lease_owner
        r._payload = self._payload
        r._result = self._result
        r._error = self._error
        r._extra = self._extra
        r._depends_on = self._depends_on
        r.state = self.state
        r._priority = self._priority
        r._attempts = self._attempts
        r._max_attempts = self._max_attempts
        r._crashes = self._crashes
        r._seq = self._seq
        r._ready_seq = self._ready_seq
        r.created_at = self.created_at
        r.updated_at = self.updated_at
        r.run_at = self.run_at
        r.started_at = self.started_at
        r.finished_at = self.finished_at
        r.timeout = self.timeout
        r.lifetime = self.lifetime
        r.lease_deadline = self.lease_deadline
        return r

    def __copy__(self):
        return self.copy()

    def __reduce__(self):
        # Through the codec, so unpickling restores exactly what was encoded.
        return decode_record, (self.encode(),)

    def __repr__(self):
        state = _STATE_NAMES[self.state] if 0 <= self.state < NUM_STATES else self.state
        return (f"JobRecord(id={self._id!r}, type={self._type!r}, state={state!r}, "
                f"priority={self._priority}, seq={self._seq}, attempts={self._attempts})")

    cdef bint _same(self, JobRecord o):
        return (self.state == o.state and self._priority == o._priority
                and self._attempts == o._attempts and self._max_attempts == o._max_attempts
                and self._crashes == o._crashes and self._seq == o._seq
                and self._ready_seq == o._ready_seq
                and _same_double(self.created_at, o.created_at)
                and _same_double(self.updated_at, o.updated_at)
                and _same_double(self.run_at, o.run_at)
                and _same_double(self.started_at, o.started_at)
                and _same_double(self.finished_at, o.finished_at)
                and _same_double(self.timeout, o.timeout)
                and _same_double(self.lifetime, o.lifetime)
                and _same_double(self.lease_deadline, o.lease_deadline)
                and self._id == o._id and self._type == o._type
                and self._payload == o._payload and self._result == o._result
                and self._error == o._error and self._extra == o._extra
                and self._depends_on == o._depends_on and self._key == o._key
                and self._lease_owner == o._lease_owner)

    def __eq__(self, other):
        # Every field; NaN equals NaN here so that decode(encode(r)) == r.
        if not isinstance(other, JobRecord):
            return NotImplemented
        return self._same(<JobRecord>other)

    __hash__ = None   # mutable


# --- decoding -----------------------------------------------------------------

cdef str _text(const unsigned char *p, Py_ssize_t n, job_id, what):
    if n == 0:
        return ""
    try:
        return PyUnicode_DecodeUTF8(<const char *>p, n, NULL)
    except UnicodeDecodeError:
        raise RecordCorrupted(job_id, f"invalid utf-8 in {what}") from None


cdef tuple _decode_ids(const unsigned char *p, Py_ssize_t n, job_id):
    if n < 4:
        raise RecordCorrupted(job_id, "malformed depends_on (no count)")
    cdef uint32_t count = _get_u32(p)
    if count > (n - 4) // 4:   # every id takes at least its 4-byte length
        raise RecordCorrupted(job_id, f"malformed depends_on (count {count} too large)")
    cdef tuple ids = PyTuple_New(count)
    cdef Py_ssize_t at = 4, i
    cdef uint32_t m
    cdef object s
    for i in range(count):
        if n - at < 4:
            raise RecordCorrupted(job_id, "malformed depends_on (truncated length)")
        m = _get_u32(p + at)
        at += 4
        if m > n - at:
            raise RecordCorrupted(job_id, "malformed depends_on (id overruns the field)")
        s = _text(p + at, m, job_id, "depends_on")
        Py_INCREF(s)
        PyTuple_SET_ITEM(ids, i, s)
        at += m
    if at != n:
        raise RecordCorrupted(job_id, "malformed depends_on (trailing bytes)")
    return ids


cdef JobRecord _decode(const unsigned char *p, Py_ssize_t n, job_id):
    if n < 3:
        raise RecordCorrupted(job_id, f"truncated header ({n} bytes, need {HEADER_SIZE})")
    if p[0] != b'G' or p[1] != b'Q':
        raise RecordCorrupted(job_id, "bad magic (not a gq record)")
    if p[2] != FORMAT_VERSION_C:
        raise RecordCorrupted(
            job_id, f"unsupported format version {p[2]} "
                    f"(this build reads version {FORMAT_VERSION_C})")
    if n < HEADER_SIZE:
        raise RecordCorrupted(job_id, f"truncated header ({n} bytes, need {HEADER_SIZE})")

    cdef Py_ssize_t size[N_VAR]
    cdef uint64_t total = HEADER_SIZE   # 9 u32 lengths cannot overflow a u64
    cdef int i
    for i in range(N_VAR):
        size[i] = _get_u32(p + OFF_LENGTHS + 4 * i)
        total += <uint64_t>size[i]
    if total != <uint64_t>n:
        raise RecordCorrupted(
            job_id, f"{'truncated record' if total > <uint64_t>n else 'trailing bytes'}"
                    f" (lengths say {total} bytes, got {n})")
    if _get_u32(p + OFF_CRC) != gq_crc32c(0, p + OFF_STATE, n - OFF_STATE):
        raise RecordCorrupted(job_id, "checksum mismatch")

    cdef const unsigned char *v = p + HEADER_SIZE
    cdef str rid = _text(v, size[0], job_id, "id")
    if job_id is None:
        job_id = rid     # the checksum passed: the id is what was written
    if p[OFF_STATE] >= NUM_STATES:
        raise RecordCorrupted(job_id, f"invalid state number {p[OFF_STATE]}")

    cdef JobRecord r = JobRecord.__new__(JobRecord)
    r._id = rid
    v += size[0]
    r._type = _text(v, size[1], job_id, "type")
    v += size[1]
    r._payload = PyBytes_FromStringAndSize(<const char *>v, size[2])
    v += size[2]
    r._result = PyBytes_FromStringAndSize(<const char *>v, size[3])
    v += size[3]
    r._error = PyBytes_FromStringAndSize(<const char *>v, size[4])
    v += size[4]
    r._extra = PyBytes_FromStringAndSize(<const char *>v, size[5])
    v += size[5]
    r._depends_on = _decode_ids(v, size[6], job_id)
    v += size[6]
    r._key = _text(v, size[7], job_id, "key")
    v += size[7]
    r._lease_owner = _text(v, size[8], job_id, "lease_owner")

    r.state = p[OFF_STATE]   # restoring, not changing: no gate
    r._priority = <int32_t>_get_u32(p + OFF_PRIORITY)
    r._attempts = _get_u32(p + OFF_ATTEMPTS)
    r._max_attempts = _get_u32(p + OFF_MAX_ATTEMPTS)
    r._crashes = _get_u32(p + OFF_CRASHES)
    r._seq = _get_u64(p + OFF_SEQ)
    r._ready_seq = _get_u64(p + OFF_READY_SEQ)
    r.created_at = _get_f64(p + OFF_DOUBLES)
    r.updated_at = _get_f64(p + OFF_DOUBLES + 8)
    r.run_at = _get_f64(p + OFF_DOUBLES + 16)
    r.started_at = _get_f64(p + OFF_DOUBLES + 24)
    r.finished_at = _get_f64(p + OFF_DOUBLES + 32)
    r.timeout = _get_f64(p + OFF_DOUBLES + 40)
    r.lifetime = _get_f64(p + OFF_DOUBLES + 48)
    r.lease_deadline = _get_f64(p + OFF_DOUBLES + 56)
    return r


cpdef JobRecord decode_record(data, job_id=None):
    """Decode `encode()` output (bytes or any contiguous buffer).

    Raises RecordCorrupted, naming `job_id` (or the stored id once the checksum
    has passed) and what failed.
    """
    cdef Py_buffer view
    if PyBytes_CheckExact(data):
        return _decode(<const unsigned char *>PyBytes_AS_STRING(data),
                       PyBytes_GET_SIZE(data), job_id)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _decode(<const unsigned char *>view.buf, view.len, job_id)
    finally:
        PyBuffer_Release(&view)


cpdef int record_format_version(data) except -1:
    """The format version byte of an encoded record (checks only the magic)."""
    cdef Py_buffer view
    cdef const unsigned char *p
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char *>view.buf
        if view.len < 3:
            raise RecordCorrupted(None, f"truncated header ({view.len} bytes)")
        if p[0] != b'G' or p[1] != b'Q':
            raise RecordCorrupted(None, "bad magic (not a gq record)")
        return p[2]
    finally:
        PyBuffer_Release(&view)
