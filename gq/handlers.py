"""`HandlerSpec`: a registered handler function and its per-type options."""

from __future__ import annotations

import inspect
from typing import Callable

from gq.config import check_duration, check_positive_int
from gq.errors import ValidationError


class HandlerSpec:
    """What `@q.handler(type, ...)` records. Options left as None fall back to
    the queue's defaults."""

    __slots__ = ("type", "fn", "is_async", "timeout", "max_attempts", "backoff_base",
                 "backoff_cap", "retry_system_errors", "concurrency", "lifetime", "validate")

    def __init__(self, type: str, fn: Callable, *, timeout=None, max_attempts=None,
                 backoff_base=None, backoff_cap=None, retry_system_errors: bool = True,
                 concurrency=None, lifetime=None, validate: Callable | None = None):
        if not callable(fn):
            raise ValidationError(f"handler for {type!r} must be callable, got {fn!r}")
        if validate is not None and not callable(validate):
            raise ValidationError(f"validate= for {type!r} must be callable")
        if not isinstance(retry_system_errors, bool):
            raise ValidationError("retry_system_errors must be True or False")
        self.type = type
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.timeout = check_duration("timeout", timeout)
        self.max_attempts = check_positive_int("max_attempts", max_attempts)
        self.backoff_base = check_duration("backoff_base", backoff_base)
        self.backoff_cap = check_duration("backoff_cap", backoff_cap)
        self.retry_system_errors = retry_system_errors
        self.concurrency = check_positive_int("concurrency", concurrency)
        self.lifetime = check_duration("lifetime", lifetime)
        self.validate = validate

    def __repr__(self) -> str:
        return f"<HandlerSpec {self.type!r} -> {getattr(self.fn, '__qualname__', self.fn)}>"
