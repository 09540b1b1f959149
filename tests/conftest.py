"""Shared fixtures: real LMDB stores in temp dirs, a seeded random source."""

from __future__ import annotations

import os
import random

import pytest

import gq


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "gq-data")


@pytest.fixture
def queue(data_dir):
    q = gq.Queue(data_dir)
    yield q
    q.close()


@pytest.fixture
def make_queue(data_dir):
    """make_queue(**options) -> a gq.Queue on this test's data dir (closed at teardown)."""
    opened = []

    def make(**options):
        q = gq.Queue(data_dir, **options)
        opened.append(q)
        return q
    yield make
    for q in reversed(opened):
        q.close()


class SeededRandom(random.Random):
    """random.Random whose repr carries its seed, so a failure can be replayed
    with GQ_TEST_SEED=<seed>."""

    def __init__(self, seed: int):
        super().__init__(seed)
        self.seed_value = seed

    def __repr__(self) -> str:
        return f"SeededRandom(seed={self.seed_value})"


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("GQ_TEST_SEED") or random.SystemRandom().randrange(2**32))
    request.node.user_properties.append(("seed", seed))
    print(f"random seed: {seed} (replay with GQ_TEST_SEED={seed})")
    return SeededRandom(seed)


def flip_byte_near(data_dir: str, marker: str, offset: int, mask: int) -> None:
    """Damage a stored record for real: flip bits of the byte `offset` bytes into
    the first occurrence of `marker` in the data dir's data.mdb."""
    path = os.path.join(data_dir, "data.mdb")
    with open(path, "r+b") as f:
        raw = f.read()
        at = raw.find(marker.encode())
        assert at >= 0, f"{marker!r} is not in {path}"
        f.seek(at + offset)
        f.write(bytes([raw[at + offset] ^ mask]))


@pytest.fixture
def flip_byte():
    return flip_byte_near
