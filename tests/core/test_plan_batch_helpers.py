"""The compiled batch helpers of gq._core.plan agree with their one-line Python
definitions (they exist only to take per-job Python loops off the submit path)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, strategies as st

from gq._core.plan import all_plain, count_types, with_lifetime
from gq.store.lmdb import space
from gq.submission import make_spec

job = st.fixed_dictionaries({
    "type": st.sampled_from(["a", "bb", "ccc", "é"]),
    "payload": st.text(max_size=40),
    "id": st.one_of(st.none(), st.from_regex(r"id-[a-z]{1,8}", fullmatch=True)),
    "key": st.one_of(st.none(), st.just("k")),
    "lifetime": st.one_of(st.none(), st.floats(0.5, 1e6)),
})


def specs_of(jobs):
    return [make_spec(j["type"], j["payload"], id=j["id"], key=j["key"],
                      lifetime=j["lifetime"], max_payload_bytes=1 << 20) for j in jobs]


@given(st.lists(job, max_size=30))
def test_helpers_match_their_definitions(jobs):
    specs = specs_of(jobs)
    assert space.jobs_bytes(specs) == sum(space.job_bytes(s) for s in specs)
    assert with_lifetime(specs) == [i for i, s in enumerate(specs) if s.lifetime > 0]
    assert count_types(specs) == dict(Counter(s.type for s in specs))
    plain = all(s.id is None and not s.key and not s.depends_on for s in specs)
    assert all_plain(specs) is plain and all_plain(tuple(specs)) is plain
