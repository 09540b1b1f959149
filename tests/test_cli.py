"""The `gq` command line end to end, in subprocesses: every command, and bad
input that must exit non-zero with one clear line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest


def gq(*args, data=None, check=True, timeout=120, stdin=None, env=None):
    cmd = [sys.executable, "-m", "gq.cli", *args]
    if data is not None:
        cmd += ["--data", data]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin,
                         env=env)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_demo_runs_to_the_end(tmp_path):
    data = str(tmp_path / "demo")
    out = gq("demo", "--jobs", "60", data=data)
    assert "finished 72 jobs" in out.stdout
    assert "completed" in out.stdout and "dead_letter" in out.stdout
    assert "invoice.parse" in out.stdout and "legacy.sync" in out.stdout
    # not a terminal: plain progress lines, no carriage returns
    assert "\r" not in out.stdout and "72/72 finished" in out.stdout
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


def assert_one_clear_line(out, message):
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


BAD = [
    (["submit", "t", "{not json"], "not valid JSON"),
    (["submit", "", "1"], "must not be empty"),
    (["submit", "t", "1", "--priority", "99999999999"], "out of range"),
    (["submit", "t", "1", "--priority", "high"], "argument --priority: invalid int value"),
    (["submit", "t", "1", "--delay", "-5"], "delay must be zero or more seconds"),
    (["submit", "t", "1", "--delay", "soon"], "argument --delay: invalid float value"),
    (["submit", "t", "--depends-on", "ghost"], "depends on 'ghost'"),
    (["submit", "t", "@/no/such/file.json"], "cannot read the payload file"),
    (["submit", "t", "1", "--id", "existing"], "existing"),
    (["submit", "t", "1", "--id", "x" * 500], "job id is 500 characters; the limit is 200"),
    (["inspect", "nope"], "no job with id 'nope'"),
    (["cancel", "nope"], "no job with id 'nope'"),
    (["retry", "nope"], "no job with id 'nope'"),
    (["retry", "existing"], "job 'existing' cannot be retried: only dead_letter jobs can be, "
                               "and it is scheduled and waits for a free worker"),
    (["retry"], "give either a job ID or --dead-letter"),
    (["retry", "existing", "--dead-letter"], "give either a job ID or --dead-letter"),
    (["retry", "existing", "--type", "t"], "--type goes with --dead-letter"),
    (["list", "--state", "done"], "unknown state 'done'"),
    (["list", "--limit", "-1"], "limit must be a non-negative integer"),
    (["list", "--limit", "many"], "argument --limit: invalid int value"),
    (["purge", "--older-than", "soon"], "is not a number of seconds"),
    (["purge", "--older-than=-1d"], "is negative"),
    (["purge", "--older-than", "-1d"], "argument --older-than: expected one argument"),
    (["purge"], "the following arguments are required: --older-than"),
    (["pause", ""], "must not be empty"),
    (["demo", "--jobs", "0"], "--jobs must be at least 1"),
    (["demo"], "already holds a gq store"),
    (["worker", "no_such_module:q"], "cannot import module 'no_such_module'"),
    (["worker", "justamodule"], "must look like MODULE:QUEUE"),
    (["worker", "gq.cli:main"], "gq.cli:main is function, not a gq.Queue"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["stats", "--colour"], "unrecognized arguments: --colour"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    data = str(tmp_path / "d")
    gq("submit", "t", "1", "--id", "existing", data=data)
    assert_one_clear_line(gq(*args, data=data, check=False), message)


READING_COMMANDS = [["inspect", "x"], ["list"], ["stats"], ["cancel", "x"], ["retry", "x"],
                    ["retry", "--dead-letter"], ["pause", "t"], ["resume", "t"], ["check"],
                    ["purge", "--older-than", "1d"], ["export"]]


@pytest.mark.parametrize("args", READING_COMMANDS, ids=[" ".join(a) for a in READING_COMMANDS])
def test_missing_data_dir_is_not_created(tmp_path, args):
    """A typo in --data must not create an empty store and report "nothing there"."""
    data = tmp_path / "no-such-dir"
    assert_one_clear_line(gq(*args, data=str(data), check=False), "does not exist")
    assert not data.exists()
    data.mkdir()
    assert_one_clear_line(gq(*args, data=str(data), check=False), "holds no gq store")


def test_empty_gq_data(tmp_path):
    env = {**os.environ, "GQ_DATA": ""}
    assert_one_clear_line(gq("stats", env=env, check=False), "the data dir is empty")


def test_gq_data_environment_variable(tmp_path):
    env = {**os.environ, "GQ_DATA": str(tmp_path / "env-data")}
    jid = gq("submit", "t", '{"a": 1}', env=env).stdout.strip()
    assert json.loads(gq("inspect", jid, "--json", env=env).stdout)["payload"] == {"a": 1}


def test_read_only_data_dir(read_only_mount):
    data = str(read_only_mount / "data")
    assert_one_clear_line(gq("stats", data=data, check=False), "not writable")
    assert_one_clear_line(gq("submit", "t", data=data, check=False), "not writable")


def test_huge_payload_from_stdin_is_refused(tmp_path):
    data = str(tmp_path / "d")
    huge = "[" + ",".join(["1"] * 600_000) + "]"      # 1.2 MB: past the 1 MiB default
    out = gq("submit", "big", "-", data=data, stdin=huge, check=False)
    assert_one_clear_line(out, "the limit is 1,048,576")
    assert not os.path.exists(os.path.join(data, "data.mdb")) or \
        json.loads(gq("stats", "--json", data=data).stdout)["total"] == 0


def test_payload_from_stdin_and_file(tmp_path):
    data = str(tmp_path / "d")
    jid = gq("submit", "t", "-", data=data, stdin='{"from": "stdin"}').stdout.strip()
    assert json.loads(gq("inspect", jid, "--json", data=data).stdout)["payload"] == \
        {"from": "stdin"}
    (tmp_path / "p.json").write_text('{"from": "file"}')
    jid = gq("submit", "t", f"@{tmp_path / 'p.json'}", "--json", data=data).stdout
    jid = json.loads(jid)["id"]
    assert json.loads(gq("inspect", jid, "--json", data=data).stdout)["payload"] == \
        {"from": "file"}
    (tmp_path / "bad.json").write_text("{oops")
    assert_one_clear_line(gq("submit", "t", f"@{tmp_path / 'bad.json'}", data=data,
                             check=False), f"the payload in {tmp_path / 'bad.json'}")


def test_unexpected_error_is_one_line_unless_asked(tmp_path):
    """An error that is not a gq.GQError (a bug, or the environment) still gets one
    line naming it; GQ_TRACEBACK=1 shows the traceback for a bug report."""
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('boom at import')\n")
    cmd = [sys.executable, "-m", "gq.cli", "worker", "broken_app:q"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert_one_clear_line(out, "RuntimeError: boom at import")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={**os.environ, "GQ_TRACEBACK": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_data_dir_is_a_file(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    out = gq("stats", data=str(path), check=False)
    assert out.returncode == 1 and "is a file, not a directory" in out.stderr
    assert "Traceback" not in out.stderr


COMMANDS = ["demo", "worker", "submit", "inspect", "list", "stats", "cancel", "retry",
            "pause", "resume", "check", "purge"]
PRINTS_DATA = set(COMMANDS) - {"worker"}


def test_help_on_every_command():
    top = gq("--help").stdout
    for command in COMMANDS:
        assert command in top
        out = gq(command, "--help").stdout
        assert "--data" in out and "GQ_DATA" in out
        assert ("--json" in out) == (command in PRINTS_DATA), command
        description = out.split("\n\n")[1]
        assert len(description) > 30 and not description.startswith("positional"), command


def test_bare_gq_prints_help():
    out = gq(check=False)
    assert out.returncode == 2 and "COMMAND" in out.stdout and "gq demo" in out.stdout


def test_tables_are_aligned(tmp_path):
    data = str(tmp_path / "d")
    gq("submit", "short", "1", "--id", "a", data=data)
    gq("submit", "a.much.longer.type.name", "1", "--id", "a-much-longer-job-id",
       "--priority", "12345", data=data)
    lines = gq("list", data=data).stdout.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "STATE", "PRIORITY", "ATTEMPTS", "LAST", "ERROR"]
    # every row's type column starts where the header's does
    at = lines[0].index("TYPE")
    assert all(line[at - 2:at] == "  " and line[at] != " " for line in lines[1:])
    lines = gq("stats", data=data).stdout.splitlines()
    assert lines[0].split()[0] == "TYPE" and lines[-1].startswith("(all types)")
    assert len({len(line) for line in lines}) == 1   # right-aligned counts: same width


def test_list_shows_last_error_and_limit_note(tmp_path):
    data = str(tmp_path / "d")
    for i in range(3):
        gq("submit", "t", str(i), data=data)
    out = gq("list", "--limit", "2", data=data).stdout
    assert "(first 2 shown; --limit N for more)" in out


def test_retry_dead_letter_all_and_by_type(tmp_path):
    """`gq retry --dead-letter [--type T]` after a real worker dead-lettered jobs."""
    data = str(tmp_path / "d")
    (tmp_path / "flaky_app.py").write_text(f"""
import gq
q = gq.Queue({data!r})

@q.handler("a", max_attempts=1)
def a(job):
    raise gq.TemporaryError("down")

@q.handler("b", max_attempts=1)
def b(job):
    raise gq.TemporaryError("down")
""")
    for job_type in ("a", "a", "b"):
        gq("submit", job_type, data=data)
    worker = subprocess.Popen([sys.executable, "-m", "gq.cli", "worker", "flaky_app:q"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while json.loads(gq("stats", "--json", data=data).stdout)["by_state"][
                "dead_letter"] < 3:
            assert time.monotonic() < deadline, "the worker did not dead-letter the jobs"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    out = json.loads(gq("retry", "--dead-letter", "--type", "a", "--json", data=data).stdout)
    assert len(out["retried"]) == 2
    stats = json.loads(gq("stats", "--json", data=data).stdout)["by_type"]
    assert stats["a"] == {"scheduled": 2} and stats["b"] == {"dead_letter": 1}
    assert gq("retry", "--dead-letter", data=data).stdout == "retried 1 dead-lettered jobs\n"
    assert gq("retry", "--dead-letter", data=data).stdout == "retried 0 dead-lettered jobs\n"
    listed = gq("list", "--type", "a", data=data).stdout
    assert "[temporary] TemporaryError: down" in listed
    shown = gq("inspect", out["retried"][0], data=data).stdout
    assert "error: [temporary] TemporaryError: down (attempt 1)" in shown


def test_every_data_command_speaks_json(tmp_path):
    data = str(tmp_path / "d")
    jid = json.loads(gq("submit", "t", "1", "--json", data=data).stdout)["id"]
    assert json.loads(gq("inspect", jid, "--json", data=data).stdout)["id"] == jid
    assert json.loads(gq("list", "--json", data=data).stdout)[0]["id"] == jid
    assert json.loads(gq("stats", "--json", data=data).stdout)["total"] == 1
    assert json.loads(gq("pause", "t", "--json", data=data).stdout) == \
        {"type": "t", "paused": True}
    assert json.loads(gq("resume", "t", "--json", data=data).stdout) == \
        {"type": "t", "paused": False}
    assert json.loads(gq("cancel", jid, "--json", data=data).stdout)["state"] == "cancelled"
    assert json.loads(gq("check", "--json", data=data).stdout)["ok"] is True
    assert json.loads(gq("purge", "--older-than", "0", "--json", data=data).stdout) == \
        {"purged": 1}
    assert json.loads(gq("retry", "--dead-letter", "--json", data=data).stdout) == \
        {"retried": []}


@pytest.mark.parametrize("option,message", [
    (["--concurrency", "0"], "concurrency must be an integer of at least 1"),
    (["--processes", "-2"], "processes must be an integer of at least 1"),
    (["--shutdown-timeout", "-1"], "shutdown_timeout must be zero or more seconds"),
    (["--concurrency", "lots"], "argument --concurrency: invalid int value"),
])
def test_worker_bad_options(tmp_path, option, message):
    (tmp_path / "ok_app.py").write_text(
        f"import gq\nq = gq.Queue({str(tmp_path / 'd')!r})\n"
        "@q.handler('t')\ndef t(job):\n    return 1\n")
    out = subprocess.run([sys.executable, "-m", "gq.cli", "worker", "ok_app:q", *option],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert_one_clear_line(out, message)


def test_worker_queue_without_handlers(tmp_path):
    (tmp_path / "bare_app.py").write_text(
        f"import gq\nq = gq.Queue({str(tmp_path / 'd')!r})\n")
    out = subprocess.run([sys.executable, "-m", "gq.cli", "worker", "bare_app:q"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert_one_clear_line(out, "the queue has no handlers")


def test_unreachable_postgres_is_one_line():
    """A database driver's multi-line message still makes one line."""
    out = gq("stats", data="postgresql://nobody@127.0.0.1:1/none", check=False)
    assert_one_clear_line(out, "postgresql://")


def test_data_and_json_go_before_or_after_the_command(tmp_path):
    """`gq --data D stats` as in git and docker, `gq stats --data D` as before."""
    data = str(tmp_path / "d")
    jid = gq("--data", data, "submit", "t", '{"n": 1}').stdout.strip()
    assert gq("--data", data, "--json", "inspect", jid).stdout == \
        gq("inspect", jid, "--data", data, "--json").stdout == \
        gq("--json", "inspect", jid, "--data", data).stdout == \
        gq("--data", data, "inspect", jid, "--json", "--data", data).stdout
    assert json.loads(gq("--json", "--data", data, "stats").stdout)["total"] == 1
    assert json.loads(gq("stats", "--json", env={**os.environ, "GQ_DATA": data}).stdout)[
        "total"] == 1
    # the command line wins over GQ_DATA, in either place
    other = {**os.environ, "GQ_DATA": str(tmp_path / "elsewhere")}
    assert jid in gq("--data", data, "list", env=other).stdout
    assert_one_clear_line(gq("--data", data, "stats", "--data", str(tmp_path / "x"),
                             check=False), "--data is given twice with different values")
    assert_one_clear_line(gq("--json", "--data", data, "worker", "m:q", check=False),
                          "--json does not apply to `gq worker`, which prints no data")


def test_submit_through_an_app_runs_its_validator(tmp_path):
    """`gq submit --app MODULE:QUEUE` checks the payload with the handler's
    validate= and stores nothing when it fails; without --app (a producer only)
    the job is stored and the worker checks it before running."""
    data = tmp_path / "d"
    (tmp_path / "validated_app.py").write_text(
        "import gq\n"
        f"q = gq.Queue({str(data)!r})\n"
        "def needs_to(payload):\n"
        "    if 'to' not in payload:\n"
        "        raise ValueError(\"payload needs 'to'\")\n"
        "@q.handler('email', validate=needs_to)\n"
        "def email(job):\n"
        "    return None\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    ok = gq("submit", "--app", "validated_app:q", "email", '{"to": "a@example.com"}', env=env)
    bad = gq("submit", "--app", "validated_app:q", "email", '{"subject": "hi"}', env=env,
             check=False)
    assert_one_clear_line(bad, "the payload of a 'email' job failed its handler's validate=: "
                               "ValueError: payload needs 'to'; nothing was stored")
    stats = json.loads(gq("stats", "--json", data=str(data)).stdout)
    assert stats["total"] == 1
    assert json.loads(gq("inspect", ok.stdout.strip(), "--json", data=str(data)).stdout)[
        "payload"] == {"to": "a@example.com"}
    gq("submit", "email", '{"subject": "hi"}', data=str(data))   # producer only: stored
    assert json.loads(gq("stats", "--json", data=str(data)).stdout)["total"] == 2
    assert_one_clear_line(gq("submit", "--app", "validated_app:q", "email", "{}", "--data",
                             str(tmp_path / "other"), env=env, check=False),
                          "names another data dir than validated_app:q")
