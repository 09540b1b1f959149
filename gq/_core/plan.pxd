# Planning new jobs: their records and index rows, for one batch of submissions.

cimport cython
from libc.stdint cimport int32_t, uint32_t


@cython.final
@cython.no_gc
cdef class JobSpec:
    cdef public object id
    cdef public str type, key
    cdef public bytes payload
    cdef public int32_t priority
    cdef public uint32_t max_attempts
    cdef public double run_at, timeout, lifetime
    cdef public tuple depends_on
