# 64-bit sequence numbers (FIFO order within a priority; ready_seq).

cdef class SequenceCounter:
    cdef unsigned long long _last   # the last number handed out (0 = none yet)

    cpdef unsigned long long take(self, unsigned long long n=*) except 0
    cpdef bytes encode(self)

cdef bytes pack_u64_c(unsigned long long n)
cdef unsigned long long unpack_u64_c(const unsigned char *p) noexcept
