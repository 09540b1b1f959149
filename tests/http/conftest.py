"""Fixtures of the HTTP tests: a worker serving HTTP on a loopback port (in this
process, or `gq worker --http` in a subprocess) and a tiny stdlib client."""

from __future__ import annotations

import re

import pytest

from http_harness import Served
from worker_harness import WorkerProcess


@pytest.fixture
def serve():
    """serve(queue, **Worker options) -> a started Served; stopped at teardown."""
    started = []

    def start(queue, **options):
        s = Served(queue, **options).start()
        started.append(s)
        return s
    yield start
    for s in started:
        if s.worker.alive:
            s.worker.stop(timeout=15)


HTTP_LINE = re.compile(r"HTTP API, metrics and dashboard on http://([^/\s]+)/")


@pytest.fixture
def spawn_http_worker(data_dir, tmp_path):
    """spawn_http_worker("module:q", *args) -> (WorkerProcess, base URL) of a
    `gq worker ... --http 127.0.0.1:0` subprocess; stopped at teardown."""
    procs = []
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)

    def spawn(target, *args, env=None, processes: int = 1):
        proc = WorkerProcess(target, data_dir, str(markers), "--http", "127.0.0.1:0",
                             *args, env=env)
        procs.append(proc)
        proc.wait_for_log("HTTP API, metrics and dashboard on", 20)
        proc.wait_started(processes)
        where = HTTP_LINE.search(proc.output).group(1)
        return proc, f"http://{where}"
    yield spawn
    for proc in procs:
        proc.cleanup()
