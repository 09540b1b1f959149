"""Building a JobRecord in any state, for stores that keep fields as columns
(PostgreSQL) and for `gq import`.

JobRecord's constructor accepts only the states a job is born in; a record read
back (or moved in from another store) is restored by walking the lifecycle
gate from there to the state it had, so even a restore goes through the gate.
"""

from __future__ import annotations

from gq._core import states as S
from gq._core.codec import JobRecord

_PATHS = {S.PENDING: (S.PENDING, ()), S.SCHEDULED: (S.SCHEDULED, ()),
          S.RUNNING: (S.SCHEDULED, (S.RUNNING,)),
          S.COMPLETED: (S.SCHEDULED, (S.RUNNING, S.COMPLETED)),
          S.FAILED: (S.SCHEDULED, (S.RUNNING, S.FAILED)),
          S.DEAD_LETTER: (S.SCHEDULED, (S.DEAD_LETTER,)),
          S.CANCELLED: (S.SCHEDULED, (S.CANCELLED,))}


def restore_record(job_id: str, job_type: str, payload: bytes, state: int,
                   **fields) -> JobRecord:
    """A JobRecord in `state` with `fields` (JobRecord's keyword arguments)."""
    born, path = _PATHS[state]
    rec = JobRecord(job_id, job_type, payload, born, **fields)
    for step in path:
        rec.move_to(step)
    return rec
