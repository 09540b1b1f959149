"""push_ready_rows (the compiled ready-feed loader) against the Python path:
the same rows read, the same heap, on a real store."""

import pytest

from gq._core.feed import push_ready_rows
from gq._core.heap import ReadyHeap


def _drain(heap):
    out = []
    while (entry := heap.pop()) is not None:
        out.append(entry)
    return out


def test_compiled_loader_matches_ready_after(queue, rng):
    types = ["email", "report", "skipped", "ünïcode.type"]
    queue.submit_many([{"type": rng.choice(types), "priority": rng.randrange(-3, 4),
                        "payload": i} for i in range(500)])
    queue.submit("email", id="jöb-ünicode-1", priority=9)
    handled = {"email", "report", "ünïcode.type"}
    store = queue.store

    expected, last = ReadyHeap(), 0
    while rows := store.ready_after(last, 37):
        for seq, priority, job_type, job_id in rows:
            if job_type in handled:
                expected.push(job_id, job_type, priority, seq)
        last = rows[-1][0]

    got, last, reads = ReadyHeap(), 0, []
    while True:
        n, seq = store.push_ready_after(got, last, 37, handled)
        reads.append(n)
        if n:
            last = seq
        if n < 37:
            break
    assert sum(reads) == 501 and last == store.ready_after(0, 1000)[-1][0]
    assert len(got) == len(expected) > 0
    assert _drain(got) == _drain(expected)
    assert store.push_ready_after(ReadyHeap(), last, 10, handled) == (0, 0)


def test_stops_at_the_end_of_the_ready_prefix_and_refuses_damaged_rows():
    heap = ReadyHeap()
    rows = iter([(b"r" + (5).to_bytes(8, "big"), (-2).to_bytes(4, "big", signed=True) + b"t\0a"),
                 (b"s-other-prefix", b"x")])
    assert push_ready_rows(heap, rows, {"t"}, 100) == (1, 5)
    assert heap.pop() == ("a", "t", -2, 5)
    bad = iter([(b"r" + (6).to_bytes(8, "big"), b"\0\0\0\0no-separator")])
    with pytest.raises(ValueError, match="damaged ready-index row"):
        push_ready_rows(heap, bad, {"t"}, 100)
