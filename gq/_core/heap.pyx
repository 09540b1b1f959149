# cython: cdivision=True
"""ReadyHeap: the ready jobs, best first, one heap per job type.

Order: priority (higher first), then seq (lower first: FIFO within a priority).

Layout (C arrays; slots and entries grow by 1.5x, the table doubles; memory
is reused, never shrunk):

* ``_slots``: one 16-byte Slot per job (its id, type, heap position);
  freed slots are chained into a free list.
* ``_table``: the id index, open addressing with linear probing, 8-byte
  buckets (slot + a hash tag, so a probe rarely has to touch the slot), load
  <= 0.7; deletion shifts entries back, so there are no tombstones.
* ``_types``: one heap of 24-byte Entries per job type. The heaps are 4-ary,
  not binary: half the depth, so half the cache misses (and back-pointer
  writes) per pop once the heap outgrows the cache; the four children sit
  side by side, so comparing them costs little. Pops at 1M entries measured
  faster than with ARITY = 2.
* ``_heads``: a small heap of the active (unpaused, non-empty) types ordered by
  their best entry, so pop/peek never scan the types, and pausing a type just
  takes it out of ``_heads`` (its entries are not touched).

So a job costs 40 bytes plus 11-23 bytes of table, plus its id string.
Complexity (n jobs, T types): push/remove/upsert O(log n + log T), pop
O(log n + log T), peek O(1), pause/resume O(log T), len/len_runnable O(1).

Everything runs under the GIL and calls no Python code while the arrays are
inconsistent (ids and types are exact str, as Cython's `str` arguments
require: their hash and == run no Python).
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject, PyObject_Hash
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memset


cdef extern from "Python.h":
    int PyUnicode_Compare(PyObject *left, PyObject *right)

cdef extern from *:
    void __builtin_prefetch(const void *p) noexcept nogil


cdef enum:
    ARITY = 4                   # children per heap node (see the module docstring)
    NO_SLOT = 0xFFFFFFFF
    MAX_SLOTS = 0x7FFFFFFF      # keeps the table <= 2**32 buckets: tag & mask = home


cdef inline bint _better(const Entry *a, const Entry *b) noexcept nogil:
    # Bitwise, not short-circuit: no branches to mispredict on random keys.
    return (a.priority > b.priority) | ((a.priority == b.priority) & (a.seq < b.seq))


# --- heap sifting: every move also updates the slot's back pointer -------------

cdef inline void _sift_up(Entry *e, Slot *slots, Py_ssize_t pos, Py_ssize_t top) noexcept nogil:
    cdef Entry item = e[pos]
    cdef Py_ssize_t parent
    while pos > top:
        parent = (pos - 1) // ARITY
        if not _better(&item, &e[parent]):
            break
        e[pos] = e[parent]
        slots[e[pos].slot].pos = <uint32_t>pos
        pos = parent
    e[pos] = item
    slots[item.slot].pos = <uint32_t>pos


cdef inline void _sift_down(Entry *e, Slot *slots, Py_ssize_t n, Py_ssize_t pos) noexcept nogil:
    # Floyd's trick (as in CPython's heapq): move the hole to a leaf taking the
    # better child each time, then sift the item up from there. The item came
    # from the bottom, so it rarely climbs: ~half the comparisons.
    cdef Py_ssize_t start = pos, child = ARITY * pos + 1, best, last
    cdef Entry item = e[pos]
    while child < n:
        best = child
        last = child + ARITY if child + ARITY <= n else n
        child += 1
        while child < last:
            best = child if _better(&e[child], &e[best]) else best
            child += 1
        e[pos] = e[best]
        slots[e[pos].slot].pos = <uint32_t>pos
        pos = best
        child = ARITY * pos + 1
    e[pos] = item
    _sift_up(e, slots, pos, start)


# Holds only C arrays, str and a dict of str -> int: no cycles, no GC tracking.
@cython.final
@cython.no_gc
cdef class ReadyHeap:
    """The ready jobs by (priority desc, seq asc), per type, pausable by type."""

    def __cinit__(self):
        self._free = NO_SLOT
        self._type_index = {}

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self._nslots):
            if self._slots[i].id != NULL:
                Py_DECREF(<object>self._slots[i].id)
        for i in range(self._ntypes):
            PyMem_Free(self._types[i].entries)
            Py_DECREF(<object>self._types[i].name)
        PyMem_Free(self._slots)
        PyMem_Free(self._table)
        PyMem_Free(self._types)
        PyMem_Free(self._heads)

    # -- types ---------------------------------------------------------------

    cdef Py_ssize_t _type_of(self, str job_type, bint create) except -2:
        """Index of `job_type` (-1 if unknown and not `create`)."""
        if job_type is None:    # Cython lets None through a `str` argument
            raise TypeError("job_type must be str, not None")
        if job_type is self._last_name:
            return self._last_type
        cdef object found = self._type_index.get(job_type)
        if found is not None:
            self._last_name = job_type
            self._last_type = <Py_ssize_t>found
            return self._last_type
        if not create:
            return -1
        cdef Py_ssize_t t = self._ntypes, cap
        cdef void *mem
        if t == self._types_cap:
            cap = t + (t >> 1) + 8
            mem = PyMem_Realloc(self._types, cap * sizeof(TypeHeap))
            if mem == NULL:
                raise MemoryError()
            self._types = <TypeHeap *>mem
            mem = PyMem_Realloc(self._heads, cap * sizeof(Py_ssize_t))
            if mem == NULL:
                raise MemoryError()
            self._heads = <Py_ssize_t *>mem
            self._types_cap = cap
        memset(&self._types[t], 0, sizeof(TypeHeap))
        Py_INCREF(job_type)
        self._types[t].name = <PyObject *>job_type
        self._types[t].head_pos = -1
        self._type_index[job_type] = t
        self._ntypes = t + 1
        return t

    # -- the id table --------------------------------------------------------

    cdef Py_ssize_t _find(self, PyObject *key, Py_hash_t h) noexcept:
        """Bucket holding `key`, or -(free bucket + 1) if absent. Needs a table."""
        cdef uint32_t tag = <uint32_t>h
        cdef size_t mask = self._table_cap - 1, i = tag & mask
        cdef Bucket *b
        cdef PyObject *other
        while True:
            b = &self._table[i]
            if b.slot1 == 0:
                return -<Py_ssize_t>i - 1
            if b.tag == tag:
                other = self._slots[b.slot1 - 1].id
                if other == key or PyUnicode_Compare(other, key) == 0:
                    return <Py_ssize_t>i
            i = (i + 1) & mask

    cdef int _grow_table(self) except -1:
        """Make room for one more id (keeps the load factor <= 0.7)."""
        if (self._count + 1) * 10 <= <Py_ssize_t>self._table_cap * 7:
            return 0
        cdef size_t cap = self._table_cap * 2 if self._table_cap else 16
        cdef size_t mask = cap - 1, i
        cdef Bucket *table = <Bucket *>PyMem_Malloc(cap * sizeof(Bucket))
        if table == NULL:
            raise MemoryError()
        memset(table, 0, cap * sizeof(Bucket))
        cdef size_t j
        for j in range(self._table_cap):
            if self._table[j].slot1 != 0:
                i = self._table[j].tag & mask
                while table[i].slot1 != 0:
                    i = (i + 1) & mask
                table[i] = self._table[j]
        PyMem_Free(self._table)
        self._table = table
        self._table_cap = cap
        return 0

    cdef void _table_delete(self, size_t i) noexcept:
        # Backward-shift deletion: pull later entries of the probe run into
        # the hole unless that would move them before their home bucket.
        cdef size_t mask = self._table_cap - 1, j = i, home
        cdef Bucket *table = self._table
        while True:
            j = (j + 1) & mask
            if table[j].slot1 == 0:
                break
            home = table[j].tag & mask
            if (i < j and (home <= i or home > j)) or (i > j and home <= i and home > j):
                table[i] = table[j]
                i = j
        table[i].slot1 = 0

    # -- slots ---------------------------------------------------------------

    cdef int _reserve_slot(self) except -1:
        if self._free != NO_SLOT or self._nslots < self._slots_cap:
            return 0
        if self._nslots >= MAX_SLOTS:
            raise OverflowError("ReadyHeap is full (2**31 - 1 entries)")
        cdef Py_ssize_t cap = self._slots_cap + (self._slots_cap >> 1) + 16
        if cap > MAX_SLOTS:
            cap = MAX_SLOTS
        cdef void *mem = PyMem_Realloc(self._slots, cap * sizeof(Slot))
        if mem == NULL:
            raise MemoryError()
        self._slots = <Slot *>mem
        self._slots_cap = cap
        return 0

    cdef void _free_slot(self, uint32_t s, Py_ssize_t bucket) noexcept:
        """Drop job `s` (off its heap already, in table `bucket`) and release its id."""
        cdef Slot *sl = &self._slots[s]
        self._table_delete(<size_t>bucket)
        Py_DECREF(<object>sl.id)
        sl.id = NULL
        sl.pos = self._free
        self._free = s
        self._count -= 1

    cdef int _reserve_entry(self, Py_ssize_t t) except -1:
        cdef TypeHeap *th = &self._types[t]
        if th.n < th.cap:
            return 0
        cdef Py_ssize_t cap = th.cap + (th.cap >> 1) + 16
        cdef void *mem = PyMem_Realloc(th.entries, cap * sizeof(Entry))
        if mem == NULL:
            raise MemoryError()
        th.entries = <Entry *>mem
        th.cap = cap
        return 0

    # -- per-type heaps --------------------------------------------------------

    cdef void _heap_insert(self, Py_ssize_t t, uint32_t s, int64_t priority,
                           uint64_t seq) noexcept:
        cdef TypeHeap *th = &self._types[t]
        cdef Entry *e = &th.entries[th.n]
        e.priority = priority
        e.seq = seq
        e.slot = s
        self._slots[s].type = <uint32_t>t
        th.n += 1
        if not th.paused:
            self._runnable += 1
        _sift_up(th.entries, self._slots, th.n - 1, 0)

    cdef void _heap_delete(self, Py_ssize_t t, Py_ssize_t pos) noexcept:
        cdef TypeHeap *th = &self._types[t]
        th.n -= 1
        if not th.paused:
            self._runnable -= 1
        if pos != th.n:
            th.entries[pos] = th.entries[th.n]
            self._heap_fix(t, pos)

    cdef void _heap_fix(self, Py_ssize_t t, Py_ssize_t pos) noexcept:
        """Restore heap order after the entry at `pos` changed."""
        cdef TypeHeap *th = &self._types[t]
        if pos > 0 and _better(&th.entries[pos], &th.entries[(pos - 1) // ARITY]):
            _sift_up(th.entries, self._slots, pos, 0)
        else:
            _sift_down(th.entries, self._slots, th.n, pos)

    # -- the heap of type heads ------------------------------------------------

    cdef void _fix_head(self, Py_ssize_t t) noexcept:
        """Re-place type `t` among the heads after its best entry or pause changed."""
        cdef TypeHeap *types = self._types
        cdef Py_ssize_t *heads = self._heads
        cdef Py_ssize_t pos = types[t].head_pos, parent, child, moved
        if types[t].paused or types[t].n == 0:
            if pos < 0:
                return
            types[t].head_pos = -1
            self._nheads -= 1
            if pos == self._nheads:
                return
            t = heads[self._nheads]   # the last type fills the hole
        elif pos < 0:
            pos = self._nheads
            self._nheads += 1
        # sift type t from pos (up, else down) among heads[0:_nheads]
        while pos > 0:
            parent = (pos - 1) >> 1
            if not _better(&types[t].entries[0], &types[heads[parent]].entries[0]):
                break
            heads[pos] = heads[parent]
            types[heads[pos]].head_pos = pos
            pos = parent
        while True:
            child = 2 * pos + 1
            if child >= self._nheads:
                break
            if child + 1 < self._nheads and _better(
                    &types[heads[child + 1]].entries[0], &types[heads[child]].entries[0]):
                child += 1
            if not _better(&types[heads[child]].entries[0], &types[t].entries[0]):
                break
            heads[pos] = heads[child]
            types[heads[pos]].head_pos = pos
            pos = child
        heads[pos] = t
        types[t].head_pos = pos

    # -- public API ------------------------------------------------------------

    cpdef push(self, str job_id, str job_type, priority, seq):
        """Add a ready job, or replace its entry if `job_id` is already here."""
        if job_id is None or job_type is None:
            raise TypeError("job_id and job_type must be str, not None")
        # Explicit: a C-typed argument would silently truncate a float.
        if not isinstance(priority, int) or not isinstance(seq, int):
            raise TypeError("priority and seq must be int, not "
                            f"{type(priority).__name__} and {type(seq).__name__}")
        cdef int64_t prio = priority          # OverflowError outside int64
        cdef uint64_t sq = seq                # OverflowError outside uint64
        cdef Py_ssize_t t = self._type_of(job_type, True)
        cdef Py_hash_t h = PyObject_Hash(job_id)
        self._grow_table()
        cdef Py_ssize_t b = self._find(<PyObject *>job_id, h), old
        cdef uint32_t s
        cdef Slot *sl
        cdef Entry *e
        if b >= 0:                           # upsert
            s = self._table[b].slot1 - 1
            sl = &self._slots[s]
            old = sl.type
            if old == t:
                e = &self._types[t].entries[sl.pos]
                e.priority = prio
                e.seq = sq
                self._heap_fix(t, sl.pos)
            else:
                self._reserve_entry(t)
                self._heap_delete(old, sl.pos)
                self._fix_head(old)
                self._heap_insert(t, s, prio, sq)
            self._fix_head(t)
            return
        self._reserve_slot()
        self._reserve_entry(t)
        if self._free != NO_SLOT:
            s = self._free
            self._free = self._slots[s].pos
        else:
            s = <uint32_t>self._nslots
            self._nslots += 1
        sl = &self._slots[s]
        Py_INCREF(job_id)
        sl.id = <PyObject *>job_id
        self._table[-b - 1].slot1 = s + 1
        self._table[-b - 1].tag = <uint32_t>h
        self._count += 1
        self._heap_insert(t, s, prio, sq)
        self._fix_head(t)

    cdef tuple _entry_tuple(self, Py_ssize_t t):
        cdef TypeHeap *th = &self._types[t]
        cdef Entry *e = &th.entries[0]
        return (<object>self._slots[e.slot].id, <object>th.name, e.priority, e.seq)

    cdef tuple _take(self):
        """Pop the best runnable entry (there must be one)."""
        cdef Py_ssize_t t = self._heads[0]
        cdef tuple out = self._entry_tuple(t)
        cdef uint32_t s = self._types[t].entries[0].slot
        cdef PyObject *key = self._slots[s].id
        cdef Py_hash_t h = PyObject_Hash(<object>key)
        # Large heaps miss the cache everywhere: start loading the id's table
        # bucket now, let the sift run meanwhile, and warm the next pop's slot.
        __builtin_prefetch(&self._table[<uint32_t>h & (self._table_cap - 1)])
        self._heap_delete(t, 0)
        self._fix_head(t)
        self._free_slot(s, self._find(key, h))
        if self._nheads:
            t = self._heads[0]
            __builtin_prefetch(&self._slots[self._types[t].entries[0].slot])
        return out

    cpdef pop(self):
        """Remove and return the best runnable (job_id, job_type, priority, seq), or None."""
        if self._nheads == 0:
            return None
        return self._take()

    cpdef peek(self):
        """The entry `pop` would return, without removing it; None if none."""
        if self._nheads == 0:
            return None
        return self._entry_tuple(self._heads[0])

    cpdef list pop_many(self, Py_ssize_t n):
        """Pop up to `n` runnable entries, best first."""
        if n < 0:
            raise ValueError(f"pop_many(n) needs n >= 0, got {n}")
        cdef Py_ssize_t k = min(n, self._runnable), i
        cdef list out = [None] * k
        for i in range(k):
            out[i] = self._take()
        return out

    cpdef bint remove(self, str job_id) except -1:
        """Drop `job_id`; False if it is not here."""
        if job_id is None or self._table_cap == 0:
            return False
        cdef Py_ssize_t b = self._find(<PyObject *>job_id, PyObject_Hash(job_id))
        if b < 0:
            return False
        cdef uint32_t s = self._table[b].slot1 - 1
        cdef Py_ssize_t t = self._slots[s].type
        self._heap_delete(t, self._slots[s].pos)
        self._fix_head(t)
        self._free_slot(s, b)
        return True

    def __len__(self):
        return self._count

    def __contains__(self, job_id):
        if type(job_id) is not str:
            if not isinstance(job_id, str):
                return False
            job_id = str.__str__(job_id)     # its own __hash__ could differ
        if self._table_cap == 0:
            return False
        return self._find(<PyObject *>job_id, PyObject_Hash(job_id)) >= 0

    cpdef Py_ssize_t len_runnable(self) noexcept:
        """Entries of unpaused types."""
        return self._runnable

    cpdef pause(self, str job_type):
        """Stop popping `job_type` (its entries stay; unknown types are remembered)."""
        cdef Py_ssize_t t = self._type_of(job_type, True)
        if not self._types[t].paused:
            self._types[t].paused = True
            self._runnable -= self._types[t].n
            self._fix_head(t)

    cpdef resume(self, str job_type):
        """Pop `job_type` again."""
        cdef Py_ssize_t t = self._type_of(job_type, False)
        if t >= 0 and self._types[t].paused:
            self._types[t].paused = False
            self._runnable += self._types[t].n
            self._fix_head(t)

    cpdef bint is_paused(self, str job_type) except -1:
        cdef Py_ssize_t t = self._type_of(job_type, False)
        return t >= 0 and self._types[t].paused

    cpdef frozenset paused_types(self):
        return frozenset([<object>self._types[t].name
                          for t in range(self._ntypes) if self._types[t].paused])

    cpdef Py_ssize_t count_type(self, str job_type) except -1:
        """Entries of `job_type`, paused or not."""
        cdef Py_ssize_t t = self._type_of(job_type, False)
        return self._types[t].n if t >= 0 else 0

    cpdef clear(self):
        """Drop every entry; paused types stay paused."""
        cdef Py_ssize_t i
        for i in range(self._nslots):
            if self._slots[i].id != NULL:
                Py_DECREF(<object>self._slots[i].id)
                self._slots[i].id = NULL
        for i in range(self._ntypes):
            self._types[i].n = 0
            self._types[i].head_pos = -1
        self._nheads = 0
        self._nslots = 0
        self._free = NO_SLOT
        self._count = 0
        self._runnable = 0
        if self._table_cap:
            memset(self._table, 0, self._table_cap * sizeof(Bucket))

    def __repr__(self):
        return (f"<ReadyHeap {self._count} entries, {self._runnable} runnable, "
                f"paused={sorted(self.paused_types())}>")
