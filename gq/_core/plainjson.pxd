# Whether a value is plain JSON: it comes back from a JSON round trip unchanged.

cdef bint is_plain_c(object value, int depth) except -1
