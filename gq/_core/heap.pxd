# The ready heap: in-memory mirror of the jobs the dispatcher may claim.

cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef struct Entry:          # one FIFO element, 16 bytes
    uint64_t seq            # lower first within a priority
    uint32_t slot           # index into ReadyHeap._slots; NO_SLOT = removed (tombstone)
    uint32_t tag            # low 32 bits of the id's hash (its table bucket)

cdef struct Fifo:           # the entries of one (type, priority), sorted by seq
    Entry *e                # live entries lie in e[lo:hi]; e[lo], e[hi-1] are live
    Py_ssize_t lo, hi, cap
    Py_ssize_t live         # live entries (the rest of e[lo:hi] are tombstones)
    int64_t priority
    uint32_t type           # index into ReadyHeap._types
    uint32_t next           # next free Fifo while on the free list

cdef struct Slot:           # one job, 16 bytes; reused through a free list
    PyObject *id            # owned reference; NULL while the slot is free
    uint32_t fifo           # index into ReadyHeap._fifos
    uint32_t pos            # position in that Fifo's entries (next free slot when free)

cdef struct Bucket:         # one id-table bucket, 8 bytes
    uint32_t slot1          # slot + 1; 0 = empty
    uint32_t tag            # low 32 bits of the id's hash: the home bucket, and
                            # most probes never touch the slot

cdef struct TypeHeap:       # one job type: its non-empty Fifos by priority
    uint32_t *order         # Fifo indices, priority descending
    Py_ssize_t norder, order_cap
    Py_ssize_t n            # live entries of this type
    PyObject *name          # owned reference
    bint paused
    Py_ssize_t head_pos     # position in ReadyHeap._heads, -1 if not there


@cython.final
cdef class ReadyHeap:
    cdef Slot *_slots
    cdef Py_ssize_t _nslots, _slots_cap     # slots used (high-water mark), allocated
    cdef uint32_t _free                     # head of the free-slot list
    cdef Py_ssize_t _count, _runnable

    cdef Bucket *_table                     # the id index (open addressing)
    cdef size_t _table_cap                  # power of two (0 before first use)

    cdef TypeHeap *_types
    cdef Py_ssize_t _ntypes, _types_cap
    cdef dict _type_index                   # type name -> index into _types
    cdef object _last_name                  # the last type name looked up, and
    cdef Py_ssize_t _last_type              # its index (callers repeat names)
    cdef Py_ssize_t *_heads                 # heap of the active types, by head entry
    cdef Py_ssize_t _nheads
    cdef Fifo *_fifos                       # every Fifo, listed or free
    cdef Py_ssize_t _nfifos, _fifos_cap
    cdef uint32_t _free_fifo                # head of the free-Fifo list

    cpdef push(self, str job_id, str job_type, priority, seq)
    cpdef pop(self)
    cpdef peek(self)
    cpdef bint remove(self, str job_id) except -1
    cpdef Py_ssize_t len_runnable(self) noexcept
    cpdef list pop_many(self, Py_ssize_t n)
    cpdef pause(self, str job_type)
    cpdef resume(self, str job_type)
    cpdef bint is_paused(self, str job_type) except -1
    cpdef frozenset paused_types(self)
    cpdef Py_ssize_t count_type(self, str job_type) except -1
    cpdef clear(self)

    cdef Py_ssize_t _type_of(self, str job_type, bint create) except -2
    cdef Py_ssize_t _find(self, PyObject *key, Py_hash_t h) noexcept
    cdef int _grow_table(self) except -1
    cdef void _table_delete(self, size_t i) noexcept
    cdef int _reserve_slot(self) except -1
    cdef void _free_slot(self, uint32_t s, Py_ssize_t bucket) noexcept
    cdef Py_ssize_t _fifo_for(self, Py_ssize_t t, int64_t priority) except -1
    cdef int _fifo_reserve(self, uint32_t f) except -1
    cdef void _fifo_compact(self, Fifo *fi) noexcept
    cdef void _fifo_insert(self, uint32_t f, uint32_t s, uint64_t seq, uint32_t tag) noexcept
    cdef void _place(self, uint32_t f, Py_ssize_t p, uint32_t s, uint64_t seq,
                     uint32_t tag) noexcept
    cdef void _kill(self, uint32_t s) noexcept
    cdef void _settle(self, uint32_t f) noexcept
    cdef void _unlist(self, uint32_t f) noexcept
    cdef bint _type_better(self, Py_ssize_t a, Py_ssize_t b) noexcept
    cdef void _fix_head(self, Py_ssize_t t) noexcept
    cdef tuple _entry_tuple(self, Py_ssize_t t, bint steal)
    cdef tuple _take(self)
