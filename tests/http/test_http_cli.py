"""`gq worker --http` refusals: one clear line on stderr, non-zero exit, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from worker_harness import APPS_DIR


def run_worker(data_dir: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GQ_TEST_DATA=data_dir)
    return subprocess.run([sys.executable, "-m", "gq.cli", "worker", "app_http:q",
                           "--data", data_dir, *args], cwd=APPS_DIR, env=env, text=True,
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("bind, words", [("localhost:http", "expected HOST:PORT"),
                                         ("127.0.0.1:70000", "out of range")])
def test_bad_http_address_is_one_line(data_dir, bind, words):
    out = run_worker(data_dir, "--http", bind)
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1 and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
def test_taken_port_is_one_line(data_dir, processes):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_worker(data_dir, "--http", f"127.0.0.1:{port}", "--processes", processes,
                         "--log-level", "ERROR")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("gq worker: cannot serve HTTP on 127.0.0.1:") and \
        "in use" in last, out.stderr
