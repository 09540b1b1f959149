"""Shared fixtures: real LMDB stores in temp dirs, a seeded random source."""

from __future__ import annotations

import os
import random
import subprocess

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


# -- PostgreSQL: the second backend ------------------------------------------------

POSTGRES_ENV = "GQ_TEST_POSTGRES"


def postgres_server_url() -> str:
    """The test server's URL; outside CI, skip when none is configured."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the PostgreSQL tests: {POSTGRES_ENV} is not set "
                        "(.ci/run starts a server through ci/postgres.sh)")
        pytest.skip(f"needs PostgreSQL: set {POSTGRES_ENV}=postgresql://user@127.0.0.1:PORT/db, "
                    "or run the tests under `bash ci/postgres.sh python -m pytest ...`, "
                    "which starts a throwaway server on loopback")
    return url


@pytest.fixture
def postgres_url():
    """A URL of a fresh, empty schema on the test server (dropped afterwards):
    each test gets a store of its own in one shared database."""
    import secrets
    from urllib.parse import quote

    import psycopg

    server = postgres_server_url()
    schema = f"gq_t_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in server else "?"
    yield f"{server}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["lmdb", "postgres"])
def backend(request):
    """The name of the store backend a parametrised test runs on."""
    return request.param


@pytest.fixture
def location(backend, data_dir, request):
    """Where a gq.Queue of this test's backend lives: a data dir or a URL."""
    if backend == "postgres":
        marker = request.node.get_closest_marker("lmdb_only")
        if marker is not None:
            pytest.skip(f"LMDB only: {marker.args[0]}")
        return request.getfixturevalue("postgres_url")
    return data_dir


@pytest.fixture
def read_only_mount(tmp_path):
    """A real read-only filesystem (as root, chmod cannot make a dir unwritable)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); read-only mount not testable")
    try:
        with gq.Queue(str(mnt / "data")) as q:
            q.submit("a", {"kept": True}, id="before-ro")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
