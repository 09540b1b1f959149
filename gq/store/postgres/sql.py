"""The state codes as the PostgreSQL store's SQL spells them, generated from the
compiled state table (gq._core.states), so the one table gates both backends.

A transition written as SQL (`UPDATE ... SET state = {SCHEDULED} WHERE state IN
{sources(SCHEDULED)}`) can only move a row from a state the table allows; the
source sets come from ALLOWED_TRANSITIONS, never from a literal list.
"""

from __future__ import annotations

from gq._core import states as S

PENDING = str(S.PENDING)
SCHEDULED = str(S.SCHEDULED)
RUNNING = str(S.RUNNING)
COMPLETED = str(S.COMPLETED)
FAILED = str(S.FAILED)
DEAD_LETTER = str(S.DEAD_LETTER)
CANCELLED = str(S.CANCELLED)

_CODE = {name: code for code, name in enumerate(S.STATE_NAMES)}


def any_of(*states: int) -> str:
    """A SQL list of state codes: `(3, 4, 6)`."""
    return "(" + ", ".join(str(s) for s in sorted(states)) + ")"


def sources(dst: int) -> str:
    """The states a job may move to `dst` from, as a SQL list."""
    return any_of(*(_CODE[src] for src, to in S.ALLOWED_TRANSITIONS
                    if to == S.STATE_NAMES[dst]))


UNFINISHED = any_of(S.PENDING, S.SCHEDULED, S.RUNNING)
WAITING = any_of(S.PENDING, S.SCHEDULED)       # what max_depth counts
ENDED = any_of(S.COMPLETED, S.FAILED, S.DEAD_LETTER)   # finish stamps finished_at
