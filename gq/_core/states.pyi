from typing import Final

PENDING: Final[int]
SCHEDULED: Final[int]
RUNNING: Final[int]
COMPLETED: Final[int]
FAILED: Final[int]
DEAD_LETTER: Final[int]
CANCELLED: Final[int]
NUM_STATES: Final[int]

STATE_NAMES: Final[tuple[str, ...]]
ALLOWED_TRANSITIONS: Final[frozenset[tuple[str, str]]]
INITIAL_STATES: Final[frozenset[str]]

def can_transition(src: int, dst: int) -> bool: ...
def check_transition(src: int, dst: int, job_id: str | None = None) -> None: ...
def check_initial(dst: int, job_id: str | None = None) -> None: ...
def is_terminal(s: int) -> bool: ...
