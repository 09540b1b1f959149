"""`gq demo`: the summary says what happened — by state, by failure category,
throughput, where the data lives and the commands to look at it."""

from __future__ import annotations

import io
import json
import os

import pytest

import gq
from gq.demo import run_demo


def test_text_summary(tmp_path):
    data = str(tmp_path / "demo")
    out = io.StringIO()
    assert run_demo(data, jobs=50, out=out) == 0
    text = out.getvalue()
    assert f"gq demo: 61 sample jobs in {data}" in text
    assert "finished 61 jobs in" in text and "jobs/s" in text
    by_state = text.split("by state:\n")[1].split("\n\n")[0].split("\n")
    assert [line.split() for line in by_state] == \
        [["completed", "59"], ["failed", "1"], ["dead_letter", "1"]]
    by_category = text.split("failed attempts by category:\n")[1].split("\n\n")[0]
    assert [line.split() for line in by_category.split("\n")] == \
        [["permanent", "1"], ["temporary", "2"], ["timeout", "1"]]
    assert "invoice.parse" in text and "PermanentError: invoice has no 'total' field" in text
    assert "legacy.sync" in text and "execution timeout after 0.5s" in text
    assert "completed after 3 attempts" in text
    assert f"data lives in {data}" in text
    for command in ("gq stats", "gq list --state dead_letter", "gq inspect etl-load",
                    "gq retry --dead-letter"):
        assert f"  {command}" in text and f"--data {data}" in text


def test_json_summary_matches_the_store(tmp_path):
    data = str(tmp_path / "demo")
    out = io.StringIO()
    run_demo(data, jobs=20, out=out, as_json=True)
    summary = json.loads(out.getvalue())
    assert summary["data"] == data and summary["jobs"] == 28
    assert summary["by_state"] == {"completed": 26, "failed": 1, "dead_letter": 1}
    assert summary["failed_attempts_by_category"] == \
        {"permanent": 1, "temporary": 2, "timeout": 1}
    assert summary["jobs_per_second"] > 0 and summary["elapsed_seconds"] > 0
    assert {f["category"] for f in summary["failures"]} == {"permanent", "timeout"}
    with gq.Queue(data) as q:
        assert q.stats()["by_state"]["completed"] == 26
        chain = [q.get(i) for i in ("etl-extract", "etl-transform", "etl-load")]
        assert all(j.state is gq.State.COMPLETED for j in chain)
        # the chain ran in order: each step started after the one it waits for finished
        assert chain[0].finished_at <= chain[1].started_at <= chain[1].finished_at \
            <= chain[2].started_at
        delayed = q.list(type="report.build")
        assert all(j.started_at >= j.created_at + 1 for j in delayed)


def test_default_is_a_fresh_temporary_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    out = io.StringIO()
    run_demo(None, jobs=5, out=out, as_json=True)
    data = json.loads(out.getvalue())["data"]
    assert data.startswith(str(tmp_path)) and os.path.exists(os.path.join(data, "data.mdb"))


def test_refuses_a_used_data_dir(tmp_path):
    data = str(tmp_path / "used")
    gq.Queue(data).close()
    with pytest.raises(gq.DataDirError, match="already holds a gq store"):
        run_demo(data, jobs=5, out=io.StringIO())


def test_live_progress_bar_on_a_terminal(tmp_path):
    """On a TTY the bar redraws in place (carriage returns), then the summary."""
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "gq.cli", "demo", "--jobs", "30",
                             "--data", str(tmp_path / "demo")],
                            stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:          # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(120) == 0, proc.stderr.read()
    os.close(leader)
    screen = b"".join(chunks).decode()
    assert "\r[" in screen and "39/39 finished" in screen
    assert "(0 running" not in screen          # the plain-line form is for non-terminals
    assert "failed attempts by category:" in screen
