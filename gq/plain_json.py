"""Payloads and results are plain JSON: stored exactly, or refused with the path.

What `q.get(id).payload` returns equals what was submitted. orjson would quietly
change some values (NaN and ±Infinity become null; datetime, date, UUID,
dataclasses and numpy scalars become strings or objects; a tuple comes back as
a list; an Enum as its value), so those are refused here with a
`ValidationError` that names the offending value's path and what to send
instead. The compiled walk (gq._core.plainjson) answers for the common case;
this module decides the rest and words the error.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import date, datetime, time

import orjson

from gq._core.plainjson import MAX_DEPTH, is_plain
from gq.errors import ValidationError

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def encode(value, what: str = "payload") -> bytes:
    """`value` as JSON bytes, or ValidationError naming `what[...]` that is not
    plain JSON and the fix."""
    if not is_plain(value):
        problem = find_problem(value, what)
        if problem is not None:
            raise ValidationError(problem)
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as e:   # e.g. a lone surrogate in a str
        raise ValidationError(find_problem(value, what, text=True) or
                              f"{what} is not JSON-serialisable: {e}") from None


def find_problem(value, path: str, text: bool = False) -> str | None:
    """The first value under `path` that is not plain JSON, described with its
    fix; None when everything round-trips equal (str and int subclasses such as
    StrEnum and IntEnum do: they compare equal to their JSON values). `text`:
    also look for strings that are not valid Unicode (orjson's only refusal
    the fast walk does not see)."""
    stack = [(value, path, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)) and depth > MAX_DEPTH:
            return (f"{path} is nested more than {MAX_DEPTH} levels deep, deeper than "
                    "JSON is stored: flatten the structure")
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                if type(key) is not str:
                    return (f"{path} has the key {key!r} (of type {_kind(key)}); JSON keys are "
                            f"plain strings: use str(key), e.g. {str(key)!r}")
                items.append((item, f"{path}[{orjson.dumps(key).decode()}]", depth + 1))
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]", depth + 1)
                         for i, item in reversed(list(enumerate(value))))
        else:
            problem = _leaf_problem(value, path, text)
            if problem is not None:
                return problem
    return None


def _leaf_problem(value, path: str, text: bool) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, enum.Enum) and not isinstance(value, (str, int)):
        return f"{path} is {value!r}, an Enum: send its value, {path}.value"
    if isinstance(value, str):
        if text:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                return (f"{path} holds {value[e.start:e.end]!r} at position {e.start}, "
                        "which is not valid Unicode text (a lone surrogate): send "
                        "valid text")
        return None
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return None
        return (f"{path} is {value}, beyond the 64-bit integers JSON is stored with: "
                f"send it as a string, str({path})")
    if type(value) is float:
        if math.isfinite(value):
            return None
        return (f"{path} is {value}, which JSON cannot hold (it would be stored as "
                f"null): send None, or a string such as \"{value}\"")
    return f"{path} is of type {_kind(value)}: {_fix(value, path)}"


def _fix(value, path: str) -> str:
    """What to send instead of a value JSON would change."""
    if isinstance(value, (datetime, date, time)):
        return f"send {path}.isoformat()"
    if type(value).__name__ == "UUID":
        return f"send str({path})"
    if type(value).__name__ == "Decimal":
        return f"send str({path}) (exact) or float({path})"
    if isinstance(value, float):           # a float subclass, e.g. numpy.float64
        return f"send float({path})"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"send text, e.g. base64.b64encode({path}).decode()"
    if isinstance(value, tuple):
        return f"send list({path}) (a tuple would come back as a list)"
    if isinstance(value, (set, frozenset)):
        return f"send sorted({path}) or list({path})"
    if dataclasses.is_dataclass(value):
        return f"send dataclasses.asdict({path})"
    if hasattr(value, "tolist"):           # numpy arrays and scalars
        return f"send {path}.tolist()"
    return "send plain JSON: dict with str keys, list, str, int, float, bool or None"


def _kind(value) -> str:
    name, module = type(value).__qualname__, type(value).__module__
    return name if module in ("builtins", None) else f"{module}.{name}"
