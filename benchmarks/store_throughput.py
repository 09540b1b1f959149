"""Durable submit throughput of gq beside its baselines, measured in one run.

    python -m benchmarks.store_throughput [--quick] [--dir DIR] [--json OUT]

Each gq figure is printed next to the baseline it is bounded by:
- one-by-one `submit`  vs a raw py-lmdb loop (one put, one synced commit) and
  the disk's fdatasync rate; rounds alternate gq / raw so disk noise hits both;
- 64 concurrent `asubmit` callers (group commit) vs one-by-one `submit`;
- `submit_many` of 1,000-job batches (jobs/s).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time

import gq
from benchmarks.baselines import RawLMDB, bench_args, fsync_rate, write_json

PAYLOAD = {"to": "user@example.com", "template": "welcome", "n": 42}


def _rate(n: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def one_by_one(q: gq.Queue, raw: RawLMDB, rounds: int, per_round: int):
    """Alternate gq and raw rounds; return (gq rates, raw rates)."""
    value = json.dumps(PAYLOAD).encode()
    gq_rates, raw_rates = [], []
    for _ in range(rounds):
        raw_rates.append(_rate(per_round, lambda: [raw.put_one(value) for _ in range(per_round)]))
        gq_rates.append(_rate(per_round, lambda: [q.submit("bench.email", PAYLOAD)
                                                  for _ in range(per_round)]))
    return gq_rates, raw_rates


def concurrent_asubmit(q: gq.Queue, total: int, callers: int = 64) -> float:
    async def caller(n):
        for _ in range(n):
            await q.asubmit("bench.email", PAYLOAD)

    async def main():
        await asyncio.gather(*(caller(total // callers) for _ in range(callers)))

    try:
        import uvloop
        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    start = time.perf_counter()
    run(main())
    return (total // callers * callers) / (time.perf_counter() - start)


def submit_many(q: gq.Queue, batches: int, size: int = 1000) -> float:
    jobs = [{"type": "bench.email", "payload": PAYLOAD} for _ in range(size)]
    q.submit_many(jobs)  # warm up
    return _rate(batches * size, lambda: [q.submit_many(jobs) for _ in range(batches)])


def measure(base: str, quick: bool) -> dict:
    """Every figure of this script (see the module docstring), sized by `quick`."""
    rounds, per_round = (5, 100) if quick else (15, 400)
    concurrent_total = 6_400 if quick else 128_000
    many_batches = 20 if quick else 200

    fsync = fsync_rate(base)
    raw = RawLMDB(base)
    q = gq.Queue(os.path.join(base, "gq"))
    try:
        gq_rates, raw_rates = one_by_one(q, raw, rounds, per_round)
        one = statistics.median(gq_rates)
        raw_rate = statistics.median(raw_rates)
        ratio = statistics.median(g / r for g, r in zip(gq_rates, raw_rates))
        conc = concurrent_asubmit(q, concurrent_total)
        many = submit_many(q, many_batches)
    finally:
        q.close()
        raw.close()
    return {
        "fsync_per_s": round(fsync),
        "raw_lmdb_commits_per_s": round(raw_rate),
        "submit_one_by_one_per_s": round(one),
        "submit_vs_raw_lmdb": round(ratio, 3),
        "asubmit_64_callers_per_s": round(conc),
        "asubmit_64_vs_one_by_one": round(conc / one, 1),
        "submit_many_1000_per_s": round(many),
        "one_by_one_rounds": rounds,
    }


def main(argv=None) -> dict:
    args, base = bench_args(__doc__.splitlines()[0], argv)
    figures = measure(base, args.quick)
    fsync, raw_rate, one = (figures[k] for k in ("fsync_per_s", "raw_lmdb_commits_per_s",
                                                  "submit_one_by_one_per_s"))
    ratio, conc, many = (figures[k] for k in ("submit_vs_raw_lmdb", "asubmit_64_callers_per_s",
                                               "submit_many_1000_per_s"))
    rounds = figures["one_by_one_rounds"]
    rows = [
        ("disk fdatasync", f"{fsync:,.0f}/s", "baseline"),
        ("raw py-lmdb put+synced commit", f"{raw_rate:,.0f}/s", "baseline"),
        ("gq submit, one by one", f"{one:,.0f}/s", f"{ratio:.2f}x raw LMDB (median of "
                                                  f"{rounds} alternating rounds)"),
        ("gq asubmit, 64 callers", f"{conc:,.0f}/s", f"{conc / one:.1f}x one-by-one"),
        ("gq submit_many, 1000/batch", f"{many:,.0f}/s", ""),
    ]
    for name, value, note in rows:
        print(f"{name:<32} {value:>14}   {note}")
    write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
