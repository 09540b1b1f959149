"""Whether a payload or a result is plain JSON, as a C walk over its values.

Plain JSON is what comes back unchanged from a JSON round trip: dict with str
keys, list, str, int within 64 bits, finite float, bool, None, nested at most
MAX_DEPTH deep. Anything else (NaN, datetime, UUID, tuple, Enum, ...) would be
stored changed: orjson writes NaN as null and a datetime as a string. Only
exact built-in types pass here; everything else, subclasses included, goes to
gq.plain_json, which decides slowly and words the error (a str or int subclass,
such as a StrEnum, does round-trip equal and is accepted there).

On the hot path of every submit (about 20 ns for a small payload).
"""

from cpython.float cimport PyFloat_AS_DOUBLE
from libc.math cimport isfinite

# orjson refuses a list or dict deeper than this ("recursion limit reached");
# the error here names the path instead.
cdef enum:
    _MAX_DEPTH = 254
MAX_DEPTH = _MAX_DEPTH
cdef object INT_MIN = -(1 << 63)
cdef object INT_MAX = (1 << 64) - 1


cdef bint is_plain_c(object value, int depth) except -1:
    cdef type t = type(value)
    if t is str or value is None or t is bool:
        return True
    if t is int:
        # small ints are the common case: compare without building big ints
        return INT_MIN <= value <= INT_MAX
    if t is float:
        return isfinite(PyFloat_AS_DOUBLE(value))
    if depth > _MAX_DEPTH:
        return False
    if t is dict:
        for key, item in (<dict>value).items():
            if type(key) is not str or not is_plain_c(item, depth + 1):
                return False
        return True
    if t is list:
        for item in <list>value:
            if not is_plain_c(item, depth + 1):
                return False
        return True
    return False


def is_plain(value) -> bool:
    """True when `value` is plain JSON made of exact built-in types (the fast
    answer); False sends it to gq.plain_json for the full rule."""
    return is_plain_c(value, 0)
