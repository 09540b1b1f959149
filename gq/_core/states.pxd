# The job lifecycle. cimport this to test states without Python calls.

cdef enum JobState:
    PENDING = 0       # submitted, waiting for its dependencies
    SCHEDULED = 1     # runnable at run_at (ready heap or timer)
    RUNNING = 2       # leased by a worker
    COMPLETED = 3     # terminal
    FAILED = 4        # terminal (permanent error)
    DEAD_LETTER = 5   # gave up; can be retried by an operator
    CANCELLED = 6     # terminal

cdef enum:
    NUM_STATES = 7

cpdef bint can_transition(int src, int dst) except -1
cpdef check_transition(int src, int dst, job_id=*)
cpdef check_initial(int dst, job_id=*)
cpdef bint is_terminal(int s) except -1
