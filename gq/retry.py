"""Retry policy: which failures retry, and exponential back-off with full jitter."""

from __future__ import annotations

import random

from gq.jobs import Category


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1`: uniform in
    [0, min(cap, base * 2**(attempt - 1))] ("full jitter"), so retries of many
    jobs that failed together spread out instead of stampeding back at once."""
    ceiling = min(cap, base * (2 ** min(attempt - 1, 62)))
    return (rng or random).uniform(0.0, ceiling)


def should_retry(category: Category, attempt: int, max_attempts: int,
                 retry_system_errors: bool) -> bool:
    """True if a failed attempt goes back to `scheduled` (else failed / dead_letter)."""
    if category is Category.PERMANENT:
        return False
    if category is Category.SYSTEM and not retry_system_errors:
        return False
    return attempt < max_attempts
