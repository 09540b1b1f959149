"""Named defaults and the validated queue configuration.

Every default lives here, once. Durations are seconds (int or float).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from gq.errors import ValidationError

VISIBILITY_TIMEOUT_DEFAULT = 300.0      # lease length of a running job
EXECUTION_TIMEOUT_DEFAULT = 1800.0      # handler run time
MAX_ATTEMPTS_DEFAULT = 5
SHUTDOWN_TIMEOUT_DEFAULT = 30.0
CONCURRENCY_DEFAULT = 64                # jobs one worker process runs at once
PROCESSES_DEFAULT = 1                   # worker processes of one `gq worker`
HEARTBEAT_INTERVAL_DEFAULT = 1.0        # how often a worker's running jobs are checked
BACKOFF_BASE_DEFAULT = 1.0
BACKOFF_CAP_DEFAULT = 3600.0
MAX_PAYLOAD_BYTES_DEFAULT = 1 << 20     # 1 MiB of encoded JSON
RETENTION_DEFAULT = 7 * 24 * 3600.0     # age of terminal jobs before purge
MAP_SIZE_DEFAULT = 64 << 30             # sparse: costs address space, not disk

IDEMPOTENCY_WINDOW_DEFAULT = 0.0       # a key stays taken this long after its job completed
CRASH_QUARANTINE_DEFAULT = 3            # worker deaths under one job before dead_letter
CIRCUIT_THRESHOLD_DEFAULT = 5           # storage failures in a row that open the circuit
CIRCUIT_COOLDOWN_DEFAULT = 10.0         # seconds open before a probe may close it

PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1
MAX_ATTEMPTS_LIMIT = 1_000_000          # stored as u32; more is never meant
MAX_ID_LENGTH = 200                     # LMDB keys are at most 511 bytes
MAX_TYPE_LENGTH = 200
MAX_KEY_LENGTH = 400


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_duration(name: str, value, *, allow_none: bool = True, allow_zero: bool = False):
    """Return `value` as a float of seconds, or raise ValidationError naming it."""
    if value is None:
        if allow_none:
            return None
        raise ValidationError(f"{name} is required (seconds, a positive number)")
    if not _is_number(value) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise ValidationError(f"{name} must be {bound} seconds, got {value!r}")
    return float(value)


def check_positive_int(name: str, value, *, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(f"{name} must be an integer of at least 1, got {value!r}")
    return value


@dataclass(frozen=True)
class QueueConfig:
    """Keyword arguments of `gq.Queue`, validated once at open."""

    visibility_timeout: float = VISIBILITY_TIMEOUT_DEFAULT
    timeout: float = EXECUTION_TIMEOUT_DEFAULT
    max_attempts: int = MAX_ATTEMPTS_DEFAULT
    backoff_base: float = BACKOFF_BASE_DEFAULT
    backoff_cap: float = BACKOFF_CAP_DEFAULT
    lifetime: float | None = None
    max_payload_bytes: int = MAX_PAYLOAD_BYTES_DEFAULT
    depth_warning: int | None = None
    max_depth: int | None = None
    retention: float = RETENTION_DEFAULT
    map_size: int = MAP_SIZE_DEFAULT
    idempotency_window: float = IDEMPOTENCY_WINDOW_DEFAULT
    circuit_threshold: int = CIRCUIT_THRESHOLD_DEFAULT
    circuit_cooldown: float = CIRCUIT_COOLDOWN_DEFAULT

    @classmethod
    def from_kwargs(cls, **kwargs) -> "QueueConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"unknown Queue option(s): {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(known))}"
            )
        values = dict(kwargs)
        for name in ("visibility_timeout", "timeout", "backoff_base", "backoff_cap", "retention",
                     "circuit_cooldown"):
            if name in values:
                values[name] = check_duration(name, values[name], allow_none=False)
        if "lifetime" in values:
            values["lifetime"] = check_duration("lifetime", values["lifetime"])
        if "idempotency_window" in values:
            values["idempotency_window"] = check_duration(
                "idempotency_window", values["idempotency_window"], allow_none=False,
                allow_zero=True)
        for name in ("max_attempts", "max_payload_bytes", "map_size", "circuit_threshold"):
            if name in values:
                values[name] = check_positive_int(name, values[name], allow_none=False)
        for name in ("depth_warning", "max_depth"):
            if name in values:
                values[name] = check_positive_int(name, values[name])
        return cls(**values)


@dataclass(frozen=True)
class WorkerConfig:
    """Keyword arguments of `gq.Worker` and the worker's timings, validated once.

    The first four are the Worker's own arguments; the rest are the runtime's
    settings, named here instead of scattered as constants."""

    concurrency: int = CONCURRENCY_DEFAULT
    processes: int = PROCESSES_DEFAULT
    shutdown_timeout: float = SHUTDOWN_TIMEOUT_DEFAULT
    heartbeat_interval: float = HEARTBEAT_INTERVAL_DEFAULT
    poll_interval: float = 1.0          # safety net should a wake-up datagram be lost
    ready_scan_limit: int = 10_000      # ready-index rows read per heap refresh step
    state_check_min_gap: float = 0.05   # doorbell-driven cancel checks, at most this often
    # An outcome that would commit alone (no ready job to claim in its slot) waits
    # up to this long for a claim to carry it: at a steady trickle of work, one
    # commit per job instead of two. Never when work is waiting nor while stopping.
    outcome_linger: float = 0.005
    outcome_retry_delay: float = 0.5    # after a storage failure, before outcomes retry
    retention_interval: float = 3600.0  # how often a worker purges past the retention
    recovery_interval: float = 5.0      # full recovery passes (deaths: every heartbeat)
    restart_delay: float = 0.2          # processes=N: before replacing a dead child...
    restart_delay_max: float = 10.0     # ...doubling while children keep dying quickly
    stuck_grace: float = 2.0            # past its timeout, a handler holding its slot is stuck
    watchdog_period: float = 0.25       # how often the watchdog looks for stuck handlers

    @classmethod
    def validated(cls, *, concurrency=CONCURRENCY_DEFAULT, processes=PROCESSES_DEFAULT,
                  shutdown_timeout=SHUTDOWN_TIMEOUT_DEFAULT,
                  heartbeat_interval=HEARTBEAT_INTERVAL_DEFAULT) -> "WorkerConfig":
        """The Worker's arguments checked in order, each error naming its argument."""
        return cls(
            concurrency=check_positive_int("concurrency", concurrency, allow_none=False),
            processes=check_positive_int("processes", processes, allow_none=False),
            shutdown_timeout=check_duration("shutdown_timeout", shutdown_timeout,
                                            allow_none=False, allow_zero=True),
            heartbeat_interval=check_duration("heartbeat_interval", heartbeat_interval,
                                              allow_none=False))
