"""Baselines measured in the same run as gq, so figures are ratios, not bare times."""

from __future__ import annotations

import os
import time

import lmdb


def fsync_rate(directory: str, seconds: float = 1.0) -> float:
    """fdatasync() calls per second on the disk holding `directory` (4 KiB writes)."""
    path = os.path.join(directory, ".fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"x" * 4096
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            os.pwrite(fd, block, (n % 16) * 4096)
            os.fdatasync(fd)
            n += 1
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)


class RawLMDB:
    """The floor for one durable write: one put, one synced commit, plain py-lmdb."""

    def __init__(self, directory: str):
        self.env = lmdb.open(os.path.join(directory, "raw-lmdb"), map_size=1 << 32,
                             sync=True, metasync=True, writemap=False)
        self.n = 0

    def put_one(self, value: bytes) -> None:
        self.put(b"%016d" % self.n, value)
        self.n += 1

    def put(self, key: bytes, value: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key, value)

    def close(self) -> None:
        self.env.close()


def raw_two_commit_latency(directory: str, rate: float, seconds: float,
                           warmup_s: float = 0.0) -> list[float]:
    """The floor for submit-to-start with plain py-lmdb: at each job's intended time
    (a steady `rate`), one synced commit that stores it and a second that claims
    it, one job after another in one thread, as a store with one writer and no
    group commit would. Returns each job's latency from its intended time (s),
    after `warmup_s` of uncounted jobs at the same rate."""
    directory = os.path.join(directory, f"raw-two-commits-{rate:g}")
    os.makedirs(directory, exist_ok=True)
    raw = RawLMDB(directory)
    n, warmup = int(rate * seconds), int(rate * warmup_s)
    lat = []
    try:
        start = time.monotonic() + 0.1
        for i in range(warmup + n):
            intended = start + i / rate
            time.sleep(max(0.0, intended - time.monotonic()))
            key = b"%016d" % i
            raw.put(key, b"x" * 200)      # submit
            raw.put(key, b"y" * 200)      # claim: the same record rewritten
            lat.append(time.monotonic() - intended)
    finally:
        raw.close()
    return lat[warmup:]


def bench_args(description: str, argv=None):
    """The options every benchmark script takes; returns (args, base dir)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke)")
    parser.add_argument("--dir", help="where to put the stores (default: a temp dir in .)")
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args(argv)
    return args, tempfile.mkdtemp(prefix="gq-bench-", dir=args.dir or ".")


def write_json(path: str | None, figures: dict) -> None:
    if path:
        import json

        with open(path, "w") as f:
            json.dump(figures, f, indent=2)


def print_and_write(figures: dict, path: str | None) -> dict:
    """A script's figures, one per line, and as JSON to `path` if given."""
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    write_json(path, figures)
    return figures
