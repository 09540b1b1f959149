"""The `gq` command line end to end, in subprocesses: every command, and bad
input that must exit non-zero with one clear line on stderr, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def gq(*args, data=None, check=True, timeout=120):
    cmd = [sys.executable, "-m", "gq.cli", *args]
    if data is not None:
        cmd += ["--data", data]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_demo_runs_to_the_end(tmp_path):
    data = str(tmp_path / "demo")
    out = gq("demo", "--jobs", "60", data=data)
    assert "finished 72 jobs" in out.stdout
    assert "completed" in out.stdout and "dead_letter" in out.stdout
    assert "invoice.parse" in out.stdout and "legacy.sync" in out.stdout
    stats = json.loads(gq("stats", "--json", data=data).stdout)
    assert stats["by_state"]["completed"] == 70
    assert stats["by_state"]["failed"] == 1 and stats["by_state"]["dead_letter"] == 1
    assert json.loads(gq("inspect", "etl-load", "--json", data=data).stdout)["state"] == \
        "completed"


def test_submit_inspect_list_cancel_pause(tmp_path):
    data = str(tmp_path / "d")
    jid = gq("submit", "email.send", '{"to": "a@example.com"}', "--priority", "5",
             data=data).stdout.strip()
    job = json.loads(gq("inspect", jid, "--json", data=data).stdout)
    assert (job["state"], job["priority"], job["payload"]) == \
        ("scheduled", 5, {"to": "a@example.com"})
    assert jid in gq("list", data=data).stdout
    child = gq("submit", "x", "--depends-on", jid, "--id", "child-1", data=data).stdout.strip()
    assert child == "child-1"
    assert json.loads(gq("list", "--state", "pending", "--json", data=data).stdout)[0]["id"] \
        == "child-1"
    assert "cancelled" in gq("cancel", jid, data=data).stdout
    gq("pause", "email.send", data=data)
    assert json.loads(gq("stats", "--json", data=data).stdout)["paused"] == ["email.send"]
    gq("resume", "email.send", data=data)


BAD = [
    (["submit", "t", "{not json"], "not valid JSON"),
    (["submit", "", "1"], "must not be empty"),
    (["submit", "t", "1", "--priority", "99999999999"], "out of range"),
    (["inspect", "nope"], "no job with id 'nope'"),
    (["cancel", "nope"], "no job with id 'nope'"),
    (["list", "--state", "done"], "unknown state 'done'"),
    (["worker", "no_such_module:q"], "cannot import module 'no_such_module'"),
    (["worker", "justamodule"], "must look like MODULE:QUEUE"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    out = gq(*args, data=str(tmp_path / "d"), check=False)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_data_dir_is_a_file(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    out = gq("stats", data=str(path), check=False)
    assert out.returncode == 1 and "is a file, not a directory" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_on_every_command():
    for command in ["demo", "worker", "submit", "inspect", "list", "stats", "cancel",
                    "retry", "pause", "resume", "check", "purge"]:
        out = gq(command, "--help")
        assert "--data" in out.stdout
