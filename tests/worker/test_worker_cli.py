"""`gq worker MODULE:QUEUE` as operators run it: bad targets are one clear line,
--data is honoured, --log-format json carries the playbook's lines."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

import gq
from worker_harness import run_cli, wait_state


def test_bad_targets_are_one_clear_line(data_dir):
    env_run = dict(os.environ, GQ_TEST_DATA=data_dir, GQ_TEST_MARKERS=data_dir)
    for target, fragment in [("no_colon", "must look like MODULE:QUEUE"),
                             ("no_such_module_xyz:q", "cannot import module"),
                             ("app_long:nothing", "missing"),
                             ("app_long:MARKERS", "not a gq.Queue")]:
        out = subprocess.run([sys.executable, "-m", "gq.cli", "worker", target],
                             capture_output=True, text=True, timeout=30,
                             cwd=os.path.join(os.path.dirname(__file__), "apps"),
                             env=env_run)
        assert out.returncode == 1, (target, out)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (target, out.stderr)
        assert "Traceback" not in out.stderr


def test_worker_honours_data_flag_or_refuses_it(tmp_path, data_dir, spawn_worker):
    """README: "Every command takes --data DIR". The app's queue lives in one dir;
    `gq worker --data OTHER` must either serve OTHER or refuse the mismatch — not
    silently serve a different dir than the operator named."""
    other = str(tmp_path / "other-data")
    with gq.Queue(other) as q_other:
        jid = q_other.submit("quick", "for the dir named by --data")
        worker = spawn_worker("app_long:q", cli_data=other)
        try:
            rc = worker.wait(5)
        except AssertionError:   # still running: then it must serve `other`
            wait_state(q_other, jid, "completed", timeout=5)
        else:
            assert rc != 0 and "--data" in worker.stderr, worker.output


def test_json_log_lines(data_dir, markers, spawn_worker):
    with gq.Queue(data_dir) as q:
        worker = spawn_worker("app_long:q", "--log-format", "json")
        worker.wait_started()
        jid = q.submit("sleep", {"seconds": 0.5})
        wait_state(q, jid, "running")
        worker.terminate()
        records = [orjson.loads(line) for line in worker.stderr.splitlines()]
        msgs = [r["msg"] for r in records]
        assert "Graceful shutdown initiated" in msgs
        assert "Waiting for 1 jobs to complete" in msgs
        assert all(r["logger"].startswith("gq") for r in records)
        assert q.get(jid).state is gq.State.COMPLETED


def test_cli_cancel_of_a_finished_job_is_one_line(data_dir):
    with gq.Queue(data_dir) as q:
        jid = q.submit("quick")
        q.cancel(jid)
    out = run_cli("cancel", jid, "--data", data_dir)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1
    assert "cannot be cancelled: it is already cancelled" in out.stderr
