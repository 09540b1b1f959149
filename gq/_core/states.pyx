"""The job lifecycle: state numbers, the transition table, and the gate.

The table is C data (``_ALLOWED[src][dst]`` plus the ``_SUBMIT`` row); every
state change in gq goes through `check_transition` (via ``JobRecord.move_to``),
and every new record through `check_initial`. docs/state_machine.md draws it.
"""

from gq.errors import InvalidTransition

STATE_NAMES = ("pending", "scheduled", "running", "completed", "failed",
               "dead_letter", "cancelled")

# A cdef enum is invisible from Python; export its values as plain ints.
globals().update(
    PENDING=PENDING, SCHEDULED=SCHEDULED, RUNNING=RUNNING, COMPLETED=COMPLETED,
    FAILED=FAILED, DEAD_LETTER=DEAD_LETTER, CANCELLED=CANCELLED,
    NUM_STATES=NUM_STATES,
)

cdef unsigned char _ALLOWED[NUM_STATES][NUM_STATES]   # [src][dst] -> 1 if allowed
cdef unsigned char _SUBMIT[NUM_STATES]                # [dst] -> 1 if a new job may start there
cdef unsigned char _TERMINAL[NUM_STATES]


cdef void _allow(int src, int dst) noexcept:
    _ALLOWED[src][dst] = 1


def _build_table():
    cdef int s, d
    for s in range(NUM_STATES):
        _SUBMIT[s] = _TERMINAL[s] = 0
        for d in range(NUM_STATES):
            _ALLOWED[s][d] = 0

    _SUBMIT[<int>PENDING] = _SUBMIT[<int>SCHEDULED] = 1

    _allow(PENDING, SCHEDULED)        # dependencies done
    _allow(PENDING, CANCELLED)
    _allow(PENDING, DEAD_LETTER)      # a dependency failed for good

    _allow(SCHEDULED, RUNNING)        # claimed by a worker
    _allow(SCHEDULED, CANCELLED)
    _allow(SCHEDULED, DEAD_LETTER)    # expired (lifetime) before it ran

    _allow(RUNNING, COMPLETED)
    _allow(RUNNING, SCHEDULED)        # retry with back-off, or lease lost
    _allow(RUNNING, FAILED)           # permanent error
    _allow(RUNNING, DEAD_LETTER)      # attempts / crashes exhausted
    _allow(RUNNING, CANCELLED)        # cancelled while running

    _allow(DEAD_LETTER, SCHEDULED)    # operator retry

    # Terminal = no way out (completed, failed, cancelled): derived, not listed.
    for s in range(NUM_STATES):
        _TERMINAL[s] = 1
        for d in range(NUM_STATES):
            if _ALLOWED[s][d]:
                _TERMINAL[s] = 0

_build_table()
del _build_table

ALLOWED_TRANSITIONS = frozenset(
    (STATE_NAMES[s], STATE_NAMES[d])
    for s in range(NUM_STATES) for d in range(NUM_STATES) if _ALLOWED[s][d]
)
INITIAL_STATES = frozenset(STATE_NAMES[s] for s in range(NUM_STATES) if _SUBMIT[s])


cdef inline int _check_range(int s) except -1:
    if s < 0 or s >= NUM_STATES:
        raise ValueError(f"unknown job state number {s} (valid: 0..{NUM_STATES - 1})")
    return 0


cpdef bint can_transition(int src, int dst) except -1:
    """True if the lifecycle allows moving a job from `src` to `dst`."""
    _check_range(src)
    _check_range(dst)
    return _ALLOWED[src][dst]


cpdef check_transition(int src, int dst, job_id=None):
    """Raise InvalidTransition unless `src` -> `dst` is allowed."""
    if not can_transition(src, dst):
        raise InvalidTransition(STATE_NAMES[src], STATE_NAMES[dst], job_id)


cpdef check_initial(int dst, job_id=None):
    """Raise InvalidTransition unless a new job may start in `dst`."""
    _check_range(dst)
    if not _SUBMIT[dst]:
        raise InvalidTransition("submit", STATE_NAMES[dst], job_id)


cpdef bint is_terminal(int s) except -1:
    """True for completed, failed and cancelled: no transition leaves them."""
    _check_range(s)
    return _TERMINAL[s]
