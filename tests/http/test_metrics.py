"""/metrics of a real `gq worker --http` after real jobs: every gq_* name of
DESIGN.md, the right counts, and with --processes 2 the sum over the processes."""

from __future__ import annotations

import os
import signal

from prometheus_client.parser import text_string_to_metric_families

import gq
from http_harness import call
from worker_harness import wait_all, wait_until

# Every metric name DESIGN.md fixes (counters with their exposition suffix).
DESIGN_NAMES = [
    "gq_jobs_submitted_total", "gq_jobs_completed_total", "gq_jobs_failed_total",
    "gq_jobs_retried_total", "gq_jobs_dead_lettered_total", "gq_queue_pending",
    "gq_queue_wait_seconds", "gq_execution_seconds", "gq_workers_active",
    "gq_worker_utilization", "gq_stuck_jobs_detected", "gq_recovery_jobs_reclaimed",
    "gq_persistence_errors_total", "gq_circuit_open",
]


def scrape(base: str) -> dict:
    """{(sample name, frozenset of labels): value}"""
    r = call(base, "GET", "/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), r
    out = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: dict) -> set:
    return {name for name, _ in samples}


def present(samples: dict, design_name: str) -> bool:
    return any(n == design_name or n.startswith(design_name + "_") for n in names(samples))


def settled(base: str, attempts: int) -> dict:
    """A scrape once the workers' metrics caught up with their work (a worker
    applies what it recorded every GAUGE_INTERVAL): every attempt's queue wait
    counted, no slot busy."""
    def caught_up(s):
        return value(s, "gq_queue_wait_seconds_count") == attempts and \
            value(s, "gq_workers_active") == 0
    return wait_until(lambda: (lambda s: s if caught_up(s) else None)(scrape(base)), 5,
                      what=f"{attempts} attempts counted and no slot busy")


def submit(base: str, job_type: str, payload=None) -> str:
    r = call(base, "POST", "/v1/jobs", {"type": job_type, "payload": payload})
    assert r.status == 201, r
    return r.json["id"]


def test_metrics_after_a_run_have_every_design_name_and_true_counts(data_dir,
                                                                   spawn_http_worker):
    proc, base = spawn_http_worker("app_http:q")
    with gq.Queue(data_dir) as q:
        ids = [submit(base, "ok") for _ in range(10)]
        ids += [submit(base, t) for t in ("flaky", "bad", "crash", "slow")]
        long_one = submit(base, "ok", {"sleep": 1.5})
        wait_all(q, ids, "completed", "failed", "dead_letter")
        wait_until(lambda: q.get(long_one).state is gq.State.RUNNING, 10)
        during = wait_until(lambda: (lambda s: s if value(s, "gq_workers_active") == 1
                                     else None)(scrape(base)), 5,
                            what="gq_workers_active to show the one running job")
        wait_all(q, [long_one], "completed")

    # the busy gauge follows the worker within GAUGE_INTERVAL of its last change
    attempts = 11 + 2 + 1 + 2 + 1
    samples = settled(base, attempts)
    missing = [n for n in DESIGN_NAMES if not present(samples, n)]
    assert not missing, f"missing from /metrics: {missing}"

    assert value(during, "gq_workers_active") == 1
    assert 0 < value(during, "gq_worker_utilization") <= 1
    for job_type, n in {"ok": 11, "flaky": 1, "bad": 1, "crash": 1, "slow": 1}.items():
        assert value(samples, "gq_jobs_submitted_total", type=job_type) == n, job_type
    assert value(samples, "gq_jobs_completed_total", type="ok") == 11
    assert value(samples, "gq_jobs_completed_total", type="flaky") == 1
    assert value(samples, "gq_jobs_failed_total", type="flaky", category="temporary") == 1
    assert value(samples, "gq_jobs_failed_total", type="bad", category="permanent") == 1
    assert value(samples, "gq_jobs_failed_total", type="crash", category="system") == 2
    assert value(samples, "gq_jobs_failed_total", type="slow", category="timeout") == 1
    assert value(samples, "gq_jobs_retried_total", type="flaky") == 1
    assert value(samples, "gq_jobs_retried_total", type="crash") == 1
    assert value(samples, "gq_jobs_dead_lettered_total", type="crash") == 1
    assert value(samples, "gq_jobs_dead_lettered_total", type="slow") == 1
    assert value(samples, "gq_execution_seconds_count", type="ok") == 11
    assert value(samples, "gq_execution_seconds_sum", type="ok") >= 1.5
    assert value(samples, "gq_execution_seconds_count", type="slow") == 1
    assert value(samples, "gq_queue_pending", state="completed") == 12
    assert value(samples, "gq_queue_pending", state="dead_letter") == 2
    assert value(samples, "gq_queue_pending", state="failed") == 1
    assert value(samples, "gq_jobs_blocked") == 0
    assert value(samples, "gq_workers_active") == 0
    assert proc.terminate() == 0


def test_processes_2_metrics_are_summed_over_the_processes(data_dir, spawn_http_worker):
    proc, base = spawn_http_worker("app_http:q", "--processes", "2", processes=2)
    run_dir = os.path.join(data_dir, "metrics", str(proc.pid))
    assert os.path.isdir(run_dir)
    with gq.Queue(data_dir) as q:
        # 20 jobs holding their slots: the busy gauge must be the sum of both children
        held = [submit(base, "ok", {"sleep": 2.0}) for _ in range(20)]
        wait_until(lambda: q.stats()["by_state"]["running"] == 20, 10)
        busy = wait_until(lambda: (lambda s: s if value(s, "gq_workers_active") == 20
                                   else None)(scrape(base)), 5,
                          what="gq_workers_active == 20 summed over the children")
        utilization = {dict(labels)["pid"]: v for (n, labels), v in busy.items()
                       if n == "gq_worker_utilization"}
        assert len(utilization) == 2 and str(proc.pid) not in utilization
        quick = [submit(base, "ok", {"sleep": 0.02}) for _ in range(80)]
        jobs = wait_all(q, held + quick, "completed", timeout=40)
        pids = {j.result["pid"] for j in jobs}
        assert len(pids) == 2, "both worker processes should have run jobs"
        crash = submit(base, "crash")
        wait_all(q, [crash], "dead_letter")

    samples = settled(base, 102)
    assert value(samples, "gq_jobs_submitted_total", type="ok") == 100
    assert value(samples, "gq_jobs_completed_total", type="ok") == 100
    assert value(samples, "gq_execution_seconds_count", type="ok") == 100
    assert value(samples, "gq_jobs_failed_total", type="crash", category="system") == 2
    assert value(samples, "gq_jobs_dead_lettered_total", type="crash") == 1
    assert value(samples, "gq_queue_pending", state="completed") == 100
    assert value(samples, "gq_workers_active") == 0
    missing = [n for n in DESIGN_NAMES if not present(samples, n)]
    assert not missing, f"missing from /metrics: {missing}"

    # A child killed outright: its counts stay (totals never go down), its gauges go.
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    proc.wait_for_log("exited with -9", 15)
    proc.wait_started(3)     # its replacement
    after = scrape(base)
    assert value(after, "gq_jobs_completed_total", type="ok") == 100
    assert str(victim) not in {dict(labels).get("pid") for (n, labels) in after
                               if n == "gq_worker_utilization"}
    assert proc.terminate(30) == 0
    assert not os.path.exists(run_dir), "the run's metric files outlive the supervisor"


def test_in_process_worker_counts_into_the_registry(make_queue, serve):
    from gq import metrics as M
    from gq.http.metrics_export import exposition

    q = make_queue()

    @q.handler("counted")
    async def counted(job):
        return 1

    def completed():
        return M.REGISTRY.get_sample_value("gq_jobs_completed_total", {"type": "counted"}) or 0
    before = completed()
    api = serve(q)
    ids = [api("POST", "/v1/jobs", {"type": "counted"}).json["id"] for _ in range(5)]
    wait_all(q, ids, "completed")
    wait_until(lambda: completed() == before + 5, 5)
    text, content_type = exposition(q.store)
    assert b'gq_jobs_completed_total{type="counted"}' in text
    assert content_type.startswith("text/plain")
