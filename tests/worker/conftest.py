"""Fixtures of the worker tests: queues on real stores (LMDB data dirs and, where
a PostgreSQL server is configured, PostgreSQL schemas), in-process workers
on asyncio or uvloop, and `gq worker` subprocesses, all cleaned up on teardown."""

from __future__ import annotations

import pytest

import gq
from worker_harness import InProcessWorker, WorkerProcess


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request):
    return request.param


@pytest.fixture
def make_queue(location):
    """make_queue(**options) -> a gq.Queue on this test's store (closed at teardown):
    an LMDB data dir, or a fresh PostgreSQL schema (the `backend` parameter)."""
    opened = []

    def make(**options):
        q = gq.Queue(location, **options)
        opened.append(q)
        return q
    yield make
    for q in reversed(opened):
        q.close()


@pytest.fixture
def start_worker(make_queue, loop_kind):
    """start_worker(queue, **Worker options) -> a started InProcessWorker, serving on
    a thread under `asyncio.run` or `uvloop.run` (the loop_kind parameter); stopped
    at teardown if the test did not stop it."""
    started = []

    def start(q, **options):
        w = InProcessWorker(q, loop_kind, **options)
        started.append(w)
        return w.start()
    yield start
    for w in started:
        if w.alive:
            w.stop(timeout=15)


@pytest.fixture
def markers(tmp_path):
    path = tmp_path / "markers"
    path.mkdir()
    return str(path)


@pytest.fixture
def spawn_worker(data_dir, markers, request):
    """spawn_worker("module:q", *cli args, console_script=False, env=None) -> a
    running WorkerProcess on this test's data dir, or on its store of either
    backend when the test uses `location`; killed at teardown if alive."""
    procs = []
    where = request.getfixturevalue("location") if "location" in request.fixturenames \
        else data_dir

    def spawn(target, *args, **kwargs):
        p = WorkerProcess(target, where, markers, *args, **kwargs)
        procs.append(p)
        return p
    yield spawn
    for p in procs:
        p.cleanup()

