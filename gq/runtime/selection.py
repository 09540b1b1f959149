"""Which of the queue's handlers a worker serves: every one, or those whose type
matches one of its `types` glob patterns (`gq.Worker(q, types=["email.*"])`), so
an operator can give slow or precious types a pool of their own.

The dispatcher claims only the selected types; jobs of other types stay
`scheduled` for the workers that serve them."""

from __future__ import annotations

import fnmatch

from gq.errors import ValidationError


def check_types(types) -> tuple[str, ...] | None:
    """`types` as a tuple of non-empty patterns, or None (every handler)."""
    if types is None:
        return None
    if isinstance(types, str):
        raise ValidationError(f"types must be a list of job types or glob patterns, "
                              f"e.g. types=[{types!r}], not the bare string {types!r}")
    try:
        patterns = tuple(types)
    except TypeError:
        raise ValidationError(f"types must be a list of job types or glob patterns, "
                              f"got {types!r}") from None
    if not patterns:
        raise ValidationError("types is empty: name at least one job type or glob pattern "
                              "(or leave it out to serve every handler)")
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValidationError(f"types holds {pattern!r}: each must be a job type or a "
                                  "glob pattern such as 'email.*'")
    return patterns


def select_handlers(handlers: dict, types: tuple[str, ...] | None) -> dict:
    """The handlers a worker with `types` serves. Every pattern must match a
    registered handler: one that matches nothing is a typo, not an idle pool.
    Without `types` it is the queue's own dict, so a handler registered later is
    served too, as before."""
    if types is None:
        return handlers
    selected = {}
    for pattern in types:
        matched = {t: spec for t, spec in handlers.items() if fnmatch.fnmatchcase(t, pattern)}
        if not matched:
            raise ValidationError(
                f"types pattern {pattern!r} matches no registered handler (handlers: "
                f"{', '.join(sorted(handlers))}); fix the pattern or register the handler")
        selected.update(matched)
    return selected
