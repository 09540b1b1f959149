"""Outcome batching: the outcomes of every job that ended since the last commit
go to the store in one transaction, which also claims jobs for the slots they
free (`afinish_many_and_claim`). An outcome that would commit alone (no ready
job to claim in its slot) first waits one `outcome_linger` for the worker's
own claim to carry it. Until it is durable the job stays `running`: a crash in
that window runs it again, as with any crash mid-job. After a storage failure
the outcomes wait and are retried, rather than leave the jobs to their lease
and run them twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, NamedTuple

from gq._core import states as S
from gq.errors import GQError, PersistenceError
from gq.runtime.execution import Outcome, Running
from gq.store.api import Finish

log = logging.getLogger("gq.worker")


class Ended(NamedTuple):
    """A job whose handler ended, and what it ended in."""

    running: Running
    outcome: Outcome


class OutcomeWriter:
    """Commits outcomes for one worker.

    `claiming(write)` awaits a claiming store write, counted as in flight;
    `release(running)` frees a job's slot once its outcome is written (or
    refused); `started(candidates, claimed)` starts what a claim returned and
    says whether some candidates were stale; `recorder` counts the
    completed ones; `stopping()` tells whether the worker drains; `rang()`
    whether the doorbell rang since the last `refresh()`."""

    def __init__(self, queue, dispatcher, *, owner: str, config, recorder,
                 running_by_type: dict[str, int],
                 claiming: Callable[[Awaitable], Awaitable],
                 release: Callable[[Running], None],
                 started: Callable[[object, list], Awaitable[bool]],
                 stopping: Callable[[], bool],
                 rang: Callable[[], bool],
                 refresh: Callable[[], Awaitable[None]]):
        self.queue = queue
        self.dispatcher = dispatcher
        self.owner = owner
        self.linger = config.outcome_linger
        self.retry_delay = config.outcome_retry_delay
        self._recorder = recorder
        self.running_by_type = running_by_type   # the worker's, kept current by it
        self._claiming = claiming
        self._release = release
        self._started = started
        self._stopping = stopping
        self._rang = rang
        self._refresh = refresh
        self.pending: list[Ended] = []     # waiting for a commit
        self.task: asyncio.Task | None = None
        self._retry_at = 0.0     # after a failed commit: not before then
        self.completed = 0       # attempts recorded (all outcomes)

    def add(self, running: Running, outcome: Outcome) -> None:
        """`running` ended in `outcome`: its slot stays held until it is durable."""
        self.pending.append((running, outcome))   # an Ended, as a plain tuple: per job
        self._ensure_task()

    def _ensure_task(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._write())

    def carried(self) -> list[Ended]:
        """The outcomes a claim may carry now (none while a retry waits)."""
        return self.pending if time.monotonic() >= self._retry_at else []

    def take(self) -> list[Ended]:
        batch, self.pending = self.pending, []
        return batch

    async def _write(self) -> None:
        await asyncio.sleep(0)   # let the other jobs ending in this loop turn queue up
        lingered = None     # the outcome list that already had its linger
        while self.pending:
            wait = self._retry_at - time.monotonic()
            if wait <= 0 and self.pending is not lingered and self.dispatcher.lingers \
                    and not (self._stopping() or self._rang()
                             or self.dispatcher.has_waiting()):
                wait, lingered = self.linger, self.pending
            if wait > 0:
                await asyncio.sleep(wait)
                continue     # the dispatcher's claim may have taken them meanwhile
            batch = self.take()
            if not self._stopping() and self._rang():
                # work became ready since the last look: learn it first, so the
                # freed slots go to the best job committed so far
                try:
                    await self._refresh()
                except GQError as e:   # the store failed: the commit below tells
                    log.error("refresh before recording outcomes failed: %s", e)
            candidates = [] if self._stopping() else self.dispatcher.pick(
                len(batch), self.running_by_type)
            await self.commit(batch, candidates)

    async def commit(self, batch: list[Ended], candidates) -> bool:
        """One commit: the outcomes of `batch` and the claim of `candidates`.
        Returns whether some candidates were stale."""
        store = self.queue.store
        finishes = [Finish(r.record.id, r.record.attempts, *outcome) for r, outcome in batch]
        try:
            write = store.afinish_many_and_claim(
                finishes, owner=self.owner, now=time.time(),
                candidates=self.dispatcher.claim_args(candidates),
                lease_deadline=time.monotonic() + self.queue.config.visibility_timeout)
            refused, claimed = await (self._claiming(write) if candidates else write)
        except PersistenceError as e:
            log.error("could not record the outcomes of %d jobs: %s; retrying in %gs",
                      len(batch), e, self.retry_delay)
            self.dispatcher.unpick(candidates)
            self.pending[:0] = batch
            self._retry_at = time.monotonic() + self.retry_delay
            self._ensure_task()
            return False
        except GQError as e:
            log.error("could not record the outcomes of %d jobs: %s", len(batch), e)
            refused, claimed = {}, []
        completed_by_type: dict[str, int] = {}
        for running, outcome in batch:
            record = running.record
            problem = refused.get(record.id)
            if problem is not None:
                log.warning("%s", problem, extra={"job_id": record.id,
                                                  "job_type": record.type,
                                                  "attempt": record.attempts})
            else:
                self.completed += 1
                if outcome.state == S.COMPLETED:
                    completed_by_type[record.type] = \
                        completed_by_type.get(record.type, 0) + 1
            self._release(running)
        if completed_by_type:
            self._recorder.completed(completed_by_type)
        return await self._started(candidates, claimed)
