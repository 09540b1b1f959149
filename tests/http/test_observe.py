"""The batched histogram update gives exactly what one observe() per value gives."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from gq.metrics import EXECUTION_BUCKETS
from gq.observe import observe_many


def samples(registry) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples
            if not s.name.endswith("_created")}


def test_observe_many_matches_observe(rng):
    values = [rng.choice(EXECUTION_BUCKETS[:-1]) for _ in range(200)]   # exact bounds
    values += [rng.uniform(0, 2000) for _ in range(500)] + [0.0, 1e9]
    one, many = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("h", "h", ["type"], buckets=EXECUTION_BUCKETS, registry=one)
    h_many = Histogram("h", "h", ["type"], buckets=EXECUTION_BUCKETS, registry=many)
    for v in values:
        h_one.labels("t").observe(v)
    observe_many(h_many.labels("t"), values[:300])
    observe_many(h_many.labels("t"), values[300:])
    got, want = samples(many), samples(one)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-6 * max(1.0, abs(value)), key
