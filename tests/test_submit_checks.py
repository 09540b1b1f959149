"""What submit checks before anything is stored, on both backends: payloads are
plain JSON (stored exactly, or refused with the path of the offending value and
its fix), and the `validate=` of a handler registered in this process."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import uuid
from collections import OrderedDict
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

import gq


@pytest.fixture
def q(location):
    queue = gq.Queue(location)
    yield queue
    queue.close()


def snapshot(queue):
    return queue.stats(), [(j.id, j.state, j.payload) for j in queue.list(limit=10_000)]


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    LARGE = 3


class Tone(str, enum.Enum):
    LOW = "low"


@dataclasses.dataclass
class Point:
    x: int


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


WHEN = datetime(2026, 12, 4, 9, 30, tzinfo=timezone.utc)

# (payload, the words the refusal must hold: the path, what it is, the fix)
CHANGED_BY_JSON = [
    ({"ratio": float("nan")}, 'payload["ratio"] is nan, which JSON cannot hold'),
    ([1, float("inf")], "payload[1] is inf, which JSON cannot hold"),
    ({"a": {"b": [0, float("-inf")]}}, 'payload["a"]["b"][1] is -inf'),
    ({"when": WHEN}, 'payload["when"] is of type datetime.datetime: send '
                     'payload["when"].isoformat()'),
    ({"day": date(2026, 12, 4)}, 'payload["day"] is of type datetime.date: send '
                                 'payload["day"].isoformat()'),
    ({"id": uuid.UUID(int=7)}, 'payload["id"] is of type uuid.UUID: send str(payload["id"])'),
    ({"price": Decimal("1.10")}, 'payload["price"] is of type decimal.Decimal'),
    ({"pair": (1, 2)}, 'payload["pair"] is of type tuple: send list(payload["pair"])'),
    ({"tags": {"a"}}, 'payload["tags"] is of type set: send sorted(payload["tags"])'),
    ({"raw": b"\x00"}, 'payload["raw"] is of type bytes: send text'),
    ({"colour": Colour.RED}, 'payload["colour"] is <Colour.RED: \'red\'>, an Enum: send its '
                             'value, payload["colour"].value'),
    ({"p": Point(1)}, 'payload["p"] is of type test_submit_checks.Point: send '
                      'dataclasses.asdict(payload["p"])'),
    ({"n": {1: "one"}}, 'payload["n"] has the key 1 (of type int); JSON keys are plain '
                        'strings'),
    ({"big": 2**64}, 'payload["big"] is 18446744073709551616, beyond the 64-bit integers'),
    ({"s": "a\ud800"}, 'payload["s"] holds \'\\ud800\' at position 1, which is not valid '
                       'Unicode text'),
    (nested(256), "is nested more than 254 levels deep"),
]

# Values that come back equal from the store, so they are accepted.
ROUND_TRIP_EQUAL = [
    None, True, 0, -1, 2**64 - 1, -(2**63), 1.5, -0.0, 1e308, "", "naïve ✓",
    [], {}, {"a": [1, {"b": None}]}, nested(254),
    {"size": Size.LARGE, "tone": Tone.LOW},          # compare equal to 3 and "low"
    OrderedDict([("b", 1), ("a", 2)]),
]


@pytest.mark.parametrize("payload,words", CHANGED_BY_JSON,
                         ids=[w.split(" is")[0][:30] for _, w in CHANGED_BY_JSON])
def test_a_payload_json_would_change_is_refused_with_its_path(q, payload, words):
    q.submit("t", {"kept": 1})
    before = snapshot(q)
    for submit in (lambda: q.submit("t", payload),
                   lambda: asyncio.run(q.asubmit("t", payload)),
                   lambda: q.submit_many([{"type": "t"}, {"type": "t", "payload": payload}])):
        with pytest.raises(gq.ValidationError) as info:
            submit()
        assert words in str(info.value)
        assert "not plain JSON" in str(info.value)
    with pytest.raises(gq.ValidationError, match="job #1 of the batch"):
        q.submit_many([{"type": "t"}, {"type": "t", "payload": payload}])
    assert snapshot(q) == before


@pytest.mark.parametrize("payload", ROUND_TRIP_EQUAL, ids=range(len(ROUND_TRIP_EQUAL)))
def test_a_plain_payload_comes_back_equal(q, payload):
    ids = [q.submit("t", payload), asyncio.run(q.asubmit("t", payload)),
           *q.submit_many([{"type": "t", "payload": payload}])]
    for job_id in ids:
        assert q.get(job_id).payload == payload


def check_order(payload):
    if "to" not in payload:
        raise ValueError("payload needs 'to'")
    return payload["to"] != "nobody"    # False: refused too


def test_validate_runs_at_submit_and_stores_nothing(q):
    q.handler("email", validate=check_order)(lambda job: None)
    q.submit("email", {"to": "kept@example.com"})
    before = snapshot(q)
    refusals = {
        "raised": ({"subject": "hi"}, "ValueError: payload needs 'to'"),
        "returned False": ({"to": "nobody"}, "check_order returned False"),
    }
    for payload, words in refusals.values():
        expected = (f"the payload of a 'email' job failed its handler's validate=: "
                    f"{words}; nothing was stored")
        with pytest.raises(gq.ValidationError) as info:
            q.submit("email", payload, priority=2)
        assert str(info.value) == expected
        with pytest.raises(gq.ValidationError) as info:
            asyncio.run(q.asubmit("email", payload))
        assert str(info.value) == expected
        with pytest.raises(gq.ValidationError) as info:   # the whole batch is refused
            q.submit_many([{"type": "email", "payload": {"to": "a@example.com"}},
                           {"type": "email", "payload": payload}])
        assert str(info.value) == f"job #1 of the batch: {expected}"
        with pytest.raises(gq.ValidationError):
            asyncio.run(q.asubmit_many([{"type": "email", "payload": payload}]))
    assert snapshot(q) == before
    assert q.get(q.submit("email", {"to": "b@example.com"})).state is gq.State.SCHEDULED


def test_a_producer_without_the_handler_submits_unchecked(q, location):
    """Only a process that registered the handler can run its validator; the
    worker checks again before it runs the job (tests/worker/test_worker_failures)."""
    q.handler("email", validate=check_order)(lambda job: None)
    with gq.Queue(location) as producer:     # no handlers registered here
        job_id = producer.submit("email", {"subject": "no recipient"})
        assert producer.get(job_id).state is gq.State.SCHEDULED
    with pytest.raises(gq.ValidationError):
        q.submit("email", {"subject": "no recipient"})


def test_submit_fields_are_the_arguments_make_spec_takes_from_a_caller():
    import inspect

    from gq.submission import SUBMIT_FIELDS, make_spec
    taken = set(inspect.signature(make_spec).parameters) - {"max_payload_bytes", "now"}
    assert SUBMIT_FIELDS == taken
