# The job record: one job = one record, and its checksummed binary encoding.

cimport cython
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef enum:
    FORMAT_VERSION_C = 1
    HEADER_SIZE = 140      # fixed part of an encoded record (layout in codec.pyx)


@cython.final
cdef class JobRecord:
    # Objects live behind properties that refuse wrong types (and None).
    cdef str _id, _type, _key, _lease_owner
    cdef bytes _payload, _result, _error, _extra
    cdef tuple _depends_on

    # Changed only by move_to (the lifecycle gate) or restored by decode_record.
    cdef readonly int state

    # Behind properties too: Cython would silently truncate a float assigned
    # to a C integer attribute; these refuse anything but int.
    cdef int32_t _priority
    cdef uint32_t _attempts, _max_attempts, _crashes
    cdef uint64_t _seq, _ready_seq

    cdef public double created_at, updated_at, run_at, started_at, finished_at
    cdef public double timeout, lifetime, lease_deadline

    cpdef move_to(self, int new_state)
    cpdef bytes encode(self)
    cpdef JobRecord copy(self)
    cdef bint _same(self, JobRecord other)


cpdef JobRecord decode_record(data, job_id=*)
cpdef int record_format_version(data) except -1
cpdef unsigned int crc32c(data, unsigned int value=*) except? 0xFFFFFFFF

cdef uint32_t crc32c_c(const unsigned char *p, size_t n, uint32_t value) noexcept nogil
