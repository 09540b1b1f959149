"""Planning new jobs: the records and index rows of a batch of submissions.

The inner loop of the LMDB store's submit op (gq/store/lmdb/submit.py, SubmitOp),
compiled because it runs once per job on the hot path of submit_many and of
group-committed asubmit: measured at ~5 µs per job in Python, ~1 µs here
(python -m benchmarks.store_throughput). The rows it builds use the key
layouts of gq/store/lmdb/keys.py, which remains the reference for them.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.string cimport memcpy

from gq._core.codec cimport JobRecord
from gq._core.plainjson cimport is_plain_c
from gq._core.states cimport PENDING, SCHEDULED


@cython.final
@cython.no_gc   # holds only str / bytes / tuples of str: no cycles to collect
cdef class JobSpec:
    """One validated job, ready for the store; the store assigns seq (and id).

    Built by gq.submission.make_spec, which checks every value first; a
    compiled class so that plan_rows reads its fields as C struct members.
    """

    def __init__(self, id, str type, bytes payload, priority, double run_at,
                 tuple depends_on, str key, max_attempts, double timeout, double lifetime):
        self.id = id                      # str, or None for a generated id
        self.type = type
        self.payload = payload            # JSON bytes
        self.priority = priority
        self.run_at = run_at              # epoch seconds, or 0.0 for "now"
        self.depends_on = depends_on      # tuple of ids
        self.key = key                    # idempotency key or ""
        self.max_attempts = max_attempts  # 0: the type's / queue's default
        self.timeout = timeout            # seconds, or -1.0: the type's / queue's default
        self.lifetime = lifetime          # seconds, or -1.0

    def __repr__(self):
        return f"<JobSpec {self.type} id={self.id!r} priority={self.priority}>"


cdef inline void _put_be64(char *p, uint64_t v) noexcept:
    cdef int i
    for i in range(8):
        p[7 - i] = <char>(v & 0xFF)
        v >>= 8


cdef inline bytes _u64(uint64_t v):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 8)
    _put_be64(PyBytes_AS_STRING(out), v)
    return out


cdef inline bytes _prefixed_u64(char prefix, uint64_t v):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 9)
    cdef char *p = PyBytes_AS_STRING(out)
    p[0] = prefix
    _put_be64(p + 1, v)
    return out


cdef inline bytes _listing_key(bytes type_prefix, char state, uint64_t seq):
    # type_prefix ("L" type "\0") + state byte + seq (u64 BE), as keys.listing_key
    cdef Py_ssize_t n = PyBytes_GET_SIZE(type_prefix)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + 9)
    cdef char *p = PyBytes_AS_STRING(out)
    memcpy(p, PyBytes_AS_STRING(type_prefix), n)
    p[n] = state
    _put_be64(p + n + 1, seq)
    return out


cdef inline bytes _ready_value(int32_t priority, bytes type_prefix, bytes id_bytes):
    # priority (i32 BE) + type "\0" + id, as keys.ready_value
    cdef Py_ssize_t nt = PyBytes_GET_SIZE(type_prefix) - 1, ni = PyBytes_GET_SIZE(id_bytes)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 4 + nt + ni)
    cdef char *p = PyBytes_AS_STRING(out)
    cdef uint32_t u = <uint32_t>priority
    p[0] = <char>(u >> 24)
    p[1] = <char>(u >> 16)
    p[2] = <char>(u >> 8)
    p[3] = <char>u
    memcpy(p + 4, PyBytes_AS_STRING(type_prefix) + 1, nt)
    memcpy(p + 4 + nt, PyBytes_AS_STRING(id_bytes), ni)
    return out


cdef bytes _generated_id(bytes tag, uint64_t seq):
    # tag + "-" + seq as 12 lowercase hex digits, as f"{tag}-{seq:012x}"
    cdef Py_ssize_t nt = PyBytes_GET_SIZE(tag), i
    cdef bytes out = PyBytes_FromStringAndSize(NULL, nt + 13)
    cdef char *p = PyBytes_AS_STRING(out)
    memcpy(p, PyBytes_AS_STRING(tag), nt)
    p[nt] = b'-'
    for i in range(12):
        p[nt + 12 - i] = b"0123456789abcdef"[seq & 0xF]
        seq >>= 4
    return out


cdef inline bytes _delayed_key(double run_at, uint64_t seq):
    # b"D" + run_at in µs (u64 BE) + seq (u64 BE), as keys.delayed_key
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 17)
    cdef char *p = PyBytes_AS_STRING(out)
    cdef double micros = run_at * 1000000.0
    p[0] = b'D'
    _put_be64(p + 1, <uint64_t>micros if micros > 0 else 0)
    _put_be64(p + 9, seq)
    return out


def plan_rows(list specs, list unmet, uint64_t first_seq, str tag, double now,
              dict listing_prefixes, list jobs, list listing, list ready, list delayed,
              dict planned, dict counts):
    """Number, encode and index `specs` (JobSpec objects).

    unmet[i]: the job waits on dependencies (it starts pending). Appends
    (key, value) rows to jobs / listing / ready / delayed, records each new id's
    state in `planned`, adds (state, type) -> n to `counts`, and returns the ids.
    """
    cdef Py_ssize_t i, n = len(specs)
    cdef uint64_t seq
    cdef int state
    cdef bint due
    cdef JobSpec spec
    cdef JobRecord rec
    cdef bytes id_bytes, type_prefix
    cdef bytes tag_bytes = tag.encode()
    cdef list ids = [None] * n
    # Counts are summed over runs of one (state, type): batches are mostly uniform.
    cdef object run_type = None
    cdef int run_state = -1
    cdef Py_ssize_t run_length = 0
    for i in range(n):
        spec = <JobSpec?>specs[i]
        seq = first_seq + <uint64_t>i
        if spec.id is None:
            if seq < (<uint64_t>1 << 48):
                id_bytes = _generated_id(tag_bytes, seq)
                job_id = id_bytes.decode("ascii")
            else:
                job_id = f"{tag}-{seq:012x}"
                id_bytes = (<str>job_id).encode()
        else:
            job_id = spec.id
            id_bytes = (<str>job_id).encode()
        job_type = spec.type
        type_prefix = listing_prefixes.get(job_type)
        if type_prefix is None:
            type_prefix = b"L" + (<str>job_type).encode() + b"\x00"
            listing_prefixes[job_type] = type_prefix
        state = PENDING if unmet[i] else SCHEDULED
        due = spec.run_at <= now

        # Fields set directly (JobRecord's keyword constructor costs more than the
        # encoding); the values were validated by gq.submission, and the state is
        # one of the two a new job may start in.
        rec = JobRecord.__new__(JobRecord)
        rec._id = job_id
        rec._type = job_type
        rec._payload = spec.payload
        rec.state = state
        rec._priority = spec.priority
        rec._attempts = 0
        rec._max_attempts = spec.max_attempts
        rec._crashes = 0
        rec._seq = seq
        rec._ready_seq = seq if state == SCHEDULED and due else 0
        rec.created_at = now
        rec.updated_at = now
        rec.run_at = spec.run_at
        rec.started_at = 0.0
        rec.finished_at = 0.0
        rec.timeout = spec.timeout
        rec.lifetime = spec.lifetime
        rec.lease_deadline = 0.0
        rec._result = b""
        rec._error = b""
        rec._extra = b""
        rec._depends_on = spec.depends_on
        rec._key = spec.key
        rec._lease_owner = ""
        jobs.append((id_bytes, rec.encode()))
        listing.append((_listing_key(type_prefix, <char>state, seq), id_bytes))
        if state == SCHEDULED:
            if due:
                ready.append((_prefixed_u64(b'r', seq),
                              _ready_value(spec.priority, type_prefix, id_bytes)))
            else:
                delayed.append((_delayed_key(spec.run_at, seq), id_bytes))
        planned[job_id] = state
        if state != run_state or job_type is not run_type:
            if run_length:
                _add_count(counts, run_state, run_type, run_length)
            run_state, run_type, run_length = state, job_type, 0
        run_length += 1
        ids[i] = job_id
    if run_length:
        _add_count(counts, run_state, run_type, run_length)
    return ids


cdef inline void _add_count(dict counts, int state, object job_type, Py_ssize_t n) except *:
    key = (state, job_type)
    counts[key] = counts.get(key, 0) + n


cdef JobSpec _plain_spec(object job_type, object payload, long long priority, object dumps,
                        Py_ssize_t max_payload_bytes):
    """A JobSpec for a plain job whose type is known valid, or None when the
    payload needs make_spec's checks (and its error message)."""
    cdef bytes data
    if priority < -2147483648 or priority > 2147483647:
        return None
    if not is_plain_c(payload, 0):
        return None     # make_spec decides (a str subclass is fine) and words the error
    try:
        data = dumps(payload)
    except Exception:
        return None
    if PyBytes_GET_SIZE(data) > max_payload_bytes:
        return None
    cdef JobSpec spec = JobSpec.__new__(JobSpec)
    spec.id = None
    spec.type = job_type
    spec.payload = data
    spec.priority = <int32_t>priority
    spec.run_at = 0.0
    spec.depends_on = ()
    spec.key = ""
    spec.max_attempts = 0
    spec.timeout = -1.0
    spec.lifetime = -1.0
    return spec


def plain_spec(job_type, payload, dict known_types, object dumps, Py_ssize_t max_payload_bytes):
    """`submit(job_type, payload)` with no other argument, when job_type is known
    valid: its JobSpec, or None for gq.submission.make_spec to check."""
    if type(job_type) is not str or job_type not in known_types:
        return None
    return _plain_spec(job_type, payload, 0, dumps, max_payload_bytes)


def fast_specs(list jobs, dict known_types, object dumps, Py_ssize_t max_payload_bytes):
    """The compiled fast path of gq.submission for the common job shape.

    A job that is a dict with only "type" (already validated: in known_types),
    "payload" (plain JSON, within max_payload_bytes) and an int
    "priority" becomes a JobSpec here; every other job comes back as None for
    gq.submission.make_spec to check (and to word its error).
    """
    cdef Py_ssize_t i, n = len(jobs), found
    cdef list out = [None] * n
    cdef long long priority
    for i in range(n):
        job = jobs[i]
        if type(job) is not dict:
            continue
        job_type = (<dict>job).get("type")
        if job_type is None or type(job_type) is not str or job_type not in known_types:
            continue
        found = 1
        payload = (<dict>job).get("payload", _MISSING)
        if payload is _MISSING:
            payload = None
        else:
            found += 1
        prio = (<dict>job).get("priority", _MISSING)
        if prio is _MISSING:
            priority = 0
        elif type(prio) is int:
            found += 1
            try:
                priority = prio
            except OverflowError:
                continue
        else:
            continue
        if found != len(<dict>job):
            continue
        out[i] = _plain_spec(job_type, payload, priority, dumps, max_payload_bytes)
    return out


cdef object _MISSING = object()


def specs_bytes(specs, Py_ssize_t job_overhead):
    """sum of gq.store.lmdb.space.job_bytes(spec) over `specs`, as one C loop (the
    room check of every submit batch)."""
    cdef Py_ssize_t total = 0, n
    cdef JobSpec spec
    for item in specs:
        spec = <JobSpec?>item
        n = PyBytes_GET_SIZE(spec.payload) + len(spec.type) + job_overhead
        if spec.id is not None:
            n += len(<str>spec.id)
        total += n * 3 // 2
    return total


def count_types(specs):
    """{job type: how many of `specs`} (the submitted-jobs counter of a batch)."""
    cdef dict out = {}
    cdef JobSpec spec
    cdef object last_type = None
    cdef Py_ssize_t run = 0
    for item in specs:
        spec = <JobSpec?>item
        if spec.type is not last_type:
            if run:
                out[last_type] = out.get(last_type, 0) + run
            last_type, run = spec.type, 0
        run += 1
    if run:
        out[last_type] = out.get(last_type, 0) + run
    return out


def all_plain(specs):
    """Whether every spec is plain: a generated id, no idempotency key, no
    dependencies (nothing to look up in the store before planning it)."""
    cdef JobSpec spec
    for item in specs:
        spec = <JobSpec?>item
        if spec.id is not None or spec.key or spec.depends_on:
            return False
    return True


def with_lifetime(specs):
    """Indexes of the specs that carry a lifetime (they get an expiry row)."""
    cdef Py_ssize_t i = 0
    cdef JobSpec spec
    cdef list out = []
    for item in specs:
        spec = <JobSpec?>item
        if spec.lifetime > 0:
            out.append(i)
        i += 1
    return out
