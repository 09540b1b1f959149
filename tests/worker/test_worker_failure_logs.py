"""Every failure log line names the job: id, type, attempt and category, as
fields of the JSON line with --log-format json (and in the text of a text line)."""

from __future__ import annotations

import orjson

import gq
from worker_harness import wait_all


def failure_records(stderr: str) -> list[dict]:
    records = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [r for r in records if " failed [" in r["msg"]]


def test_failure_lines_carry_job_fields_in_json(data_dir, spawn_worker):
    with gq.Queue(data_dir) as q:
        worker = spawn_worker("app_http:q", "--log-format", "json")
        worker.wait_started()
        ids = {t: q.submit(t) for t in ("flaky", "bad", "crash", "slow")}
        wait_all(q, ids.values(), "completed", "failed", "dead_letter")
        worker.terminate()
    lines = failure_records(worker.stderr)
    seen = {(r["job_type"], r["attempt"], r["category"]) for r in lines}
    assert seen == {("flaky", 1, "temporary"), ("bad", 1, "permanent"),
                    ("crash", 1, "system"), ("crash", 2, "system"), ("slow", 1, "timeout")}
    for r in lines:
        assert r["job_id"] == ids[r["job_type"]]
        assert r["level"] in ("warning", "error")
        assert r["outcome"] in ("scheduled", "failed", "dead_letter")
        assert f"job {r['job_id']} ({r['job_type']}) attempt {r['attempt']}/" in r["msg"]
    crash = [r for r in lines if r["category"] == "system"]
    assert all("Traceback (most recent call last)" in r["msg"] and
               "RuntimeError: handler bug" in r["msg"] for r in crash)


def test_failure_lines_in_text_name_the_job(data_dir, spawn_worker):
    with gq.Queue(data_dir) as q:
        worker = spawn_worker("app_http:q")
        worker.wait_started()
        jid = q.submit("bad")
        wait_all(q, [jid], "failed")
        worker.terminate()
    line = next(ln for ln in worker.stderr.splitlines() if " failed [" in ln)
    assert f"job {jid} (bad) attempt 1/5 failed [permanent]" in line
