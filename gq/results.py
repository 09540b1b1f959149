"""Waiting for a job's result (`Queue.result`, `Queue.aresult`).

The waiter reads the job; while it has not ended, it waits on the store's
`watch_ends` socket, which a durable commit that ended a job makes readable
(LMDB: a datagram from whichever process committed; PostgreSQL: NOTIFY from a
trigger, only while a waiter is registered), then reads again. No polling: the
re-read every RECHECK_INTERVAL is only the safety net the workers have too, for
a wake-up lost (a LISTEN session being reopened) or a job purged meanwhile.
"""

from __future__ import annotations

import asyncio
import math
import select
import time

from gq._core import states as S
from gq.config import check_duration
from gq.errors import JobFailed, JobNotFound, ValidationError
from gq.jobs import JobInfo
from gq.store.loop import store_read
from gq.store.rules import ENDED_STATES

RECHECK_INTERVAL = 1.0    # safety net only; the wake-up is what ends a wait


def read(store, job_id: str):
    """The stored record of `job_id`; JobNotFound if it is not stored."""
    record = store.get(job_id)
    if record is None:
        raise JobNotFound(job_id)
    return record


def outcome(info: JobInfo, job_id: str, timeout):
    """What `result` answers for the job as last read: its result if completed,
    JobFailed if it ended otherwise, TimeoutError if it has not ended."""
    state = info.state.code
    if state == S.COMPLETED:
        return info.result
    if state in ENDED_STATES:
        raise JobFailed(info)
    raise TimeoutError(f"job {job_id!r} did not end within {timeout:g}s (it is "
                       f"{info.state.value}); wait longer, or `gq inspect` it to see why")


def check_wait(job_id, timeout) -> float:
    """The wait's deadline on the monotonic clock (inf: no timeout)."""
    if not isinstance(job_id, str):
        raise ValidationError(f"job id must be a string, got {type(job_id).__name__}")
    timeout = check_duration("timeout", timeout, allow_zero=True)
    return math.inf if timeout is None else time.monotonic() + timeout


def _drain(sock) -> None:
    try:
        while sock.recv(64):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def wait_ended(store, job_id: str, timeout: float | None = None) -> JobInfo:
    """Block until `job_id` ends or `timeout` passes; the job as last read."""
    deadline = check_wait(job_id, timeout)
    record = read(store, job_id)
    if record.state in ENDED_STATES:
        return JobInfo(record)
    with store.watch_ends(job_id) as sock:
        poller = select.poll()    # not select(): a busy server's descriptors pass 1024
        poller.register(sock, select.POLLIN)
        while (record := read(store, job_id)).state not in ENDED_STATES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if poller.poll(math.ceil(min(left, RECHECK_INTERVAL) * 1000)):
                _drain(sock)
    return JobInfo(record)


async def await_ended(store, job_id: str, timeout: float | None = None) -> JobInfo:
    """`wait_ended` for an event loop: the socket is watched by the loop, and
    store calls that can block go to a thread (gq.store.loop.store_read)."""
    deadline = check_wait(job_id, timeout)
    record = await store_read(store, read, store, job_id)
    if record.state in ENDED_STATES:
        return JobInfo(record)
    loop = asyncio.get_running_loop()
    watch = store.watch_ends(job_id)
    sock = await asyncio.to_thread(watch.__enter__)
    woken = asyncio.Event()
    loop.add_reader(sock.fileno(), lambda: (_drain(sock), woken.set()))
    try:
        while (record := await store_read(store, read, store, job_id)).state \
                not in ENDED_STATES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(woken.wait(), min(left, RECHECK_INTERVAL))
            except asyncio.TimeoutError:
                pass
            woken.clear()
        return JobInfo(record)
    finally:
        loop.remove_reader(sock.fileno())
        await asyncio.to_thread(watch.__exit__, None, None, None)


def wait(store, job_id: str, timeout: float | None = None):
    """Block until `job_id` ends: its result, or JobFailed / TimeoutError."""
    return outcome(wait_ended(store, job_id, timeout), job_id, timeout)


async def await_(store, job_id: str, timeout: float | None = None):
    """`wait` without holding the event loop."""
    return outcome(await await_ended(store, job_id, timeout), job_id, timeout)
