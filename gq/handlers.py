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

    def validation_problem(self, payload) -> str | None:
        """What the handler's `validate=` found wrong with `payload`, or None.
        It fails by raising (any exception) or by returning False. Asked at
        submit in every process that registered this handler, and again by the
        worker before it runs the job (for jobs submitted elsewhere)."""
        if self.validate is None:
            return None
        try:
            verdict = self.validate(payload)
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        if verdict is False:
            name = getattr(self.validate, "__qualname__", repr(self.validate))
            return f"{name} returned False"
        return None

    def __repr__(self) -> str:
        return f"<HandlerSpec {self.type!r} -> {getattr(self.fn, '__qualname__', self.fn)}>"
