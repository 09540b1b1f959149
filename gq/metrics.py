"""Every `gq_*` metric of DESIGN.md, defined once, here.

Other modules import the objects below and update them; nothing else defines a
metric. Names, labels and help texts are interface (the playbook, the alert
rules under deploy/ and the dashboards depend on them).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: The registry gq's metrics live in (kept apart from the process-wide default
#: registry so embedding gq never clashes with an application's own metrics).
REGISTRY = CollectorRegistry(auto_describe=True)

# Waits span milliseconds (an idle worker) to hours (a backlog, a long delay).
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                30, 60, 300, 900, 3600, float("inf"))
# Handler run times: sub-millisecond no-ops to the 30 min default timeout.
EXECUTION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                     2.5, 5, 10, 30, 60, 300, 1800, float("inf"))

JOBS_SUBMITTED = Counter(
    "gq_jobs_submitted", "Jobs accepted (persisted) by submit, by type.",
    ["type"], registry=REGISTRY)
JOBS_COMPLETED = Counter(
    "gq_jobs_completed", "Jobs whose handler returned, by type.",
    ["type"], registry=REGISTRY)
JOBS_FAILED = Counter(
    "gq_jobs_failed", "Handler attempts that failed, by type and failure category "
    "(temporary, permanent, system, timeout).",
    ["type", "category"], registry=REGISTRY)
JOBS_RETRIED = Counter(
    "gq_jobs_retried", "Failed attempts scheduled to run again, by type.",
    ["type"], registry=REGISTRY)
JOBS_SNOOZED = Counter(
    "gq_jobs_snoozed", "Attempts that ended in gq.Snooze (back to scheduled, no "
    "attempt used), by type.",
    ["type"], registry=REGISTRY)
JOBS_DEAD_LETTERED = Counter(
    "gq_jobs_dead_lettered", "Jobs moved to dead_letter (attempts exhausted, lifetime, "
    "crash-loop quarantine), by type.",
    ["type"], registry=REGISTRY)
QUEUE_PENDING = Gauge(
    "gq_queue_pending", "Jobs in the store by state (read from the store's counts).",
    ["state"], registry=REGISTRY, multiprocess_mode="mostrecent")
QUEUE_WAIT = Histogram(
    "gq_queue_wait_seconds", "Time from a job becoming runnable (submit or run_at) to "
    "its handler starting.", buckets=WAIT_BUCKETS, registry=REGISTRY)
EXECUTION = Histogram(
    "gq_execution_seconds", "Handler run time per attempt, by type.",
    ["type"], buckets=EXECUTION_BUCKETS, registry=REGISTRY)
WORKERS_ACTIVE = Gauge(
    "gq_workers_active", "Worker slots currently running a handler.",
    registry=REGISTRY, multiprocess_mode="livesum")
WORKER_UTILIZATION = Gauge(
    "gq_worker_utilization", "Busy slots / configured slots, 0..1, per worker process.",
    registry=REGISTRY, multiprocess_mode="liveall")
STUCK_JOBS_DETECTED = Counter(
    "gq_stuck_jobs_detected", "Running jobs found with an expired lease or a dead owner.",
    registry=REGISTRY)
RECOVERY_JOBS_RECLAIMED = Counter(
    "gq_recovery_jobs_reclaimed", "Orphaned running jobs put back to scheduled "
    "(or quarantined) by recovery.", registry=REGISTRY)
PERSISTENCE_ERRORS = Counter(
    "gq_persistence_errors", "Store operations that failed in the storage engine "
    "(I/O error, failed fsync, full disk or map).", registry=REGISTRY)
CIRCUIT_OPEN = Gauge(
    "gq_circuit_open", "1 while the store circuit breaker is open (submissions "
    "refused with StoreUnavailable), else 0.", registry=REGISTRY,
    multiprocess_mode="max")
# Scheduling (issue 5): named here, not in DESIGN.md.
QUEUE_DEPTH_WARNING = Gauge(
    "gq_queue_depth_warning", "1 while pending + scheduled jobs exceed the queue's "
    "depth_warning, else 0.", registry=REGISTRY, multiprocess_mode="max")
JOBS_BLOCKED = Gauge(
    "gq_jobs_blocked", "Pending jobs blocked by a dependency that ended failed, "
    "dead_letter or cancelled (\"Dependency not satisfiable\").", registry=REGISTRY,
    multiprocess_mode="mostrecent")
