"""The LMDB write op of submit / submit_many: every check first (keys, ids,
dependencies, depth, room), then the new jobs are planned into the batch and
written with the other submits of the same group commit."""

from __future__ import annotations

from gq._core import states as S
from gq._core.plan import all_plain
from gq.errors import UnknownDependency
from gq.store import rules
from gq.store.lmdb import blocking, space
from gq.store.lmdb import keys as K
from gq.store.lmdb.batch import Batch, load_record, plan_specs


class SubmitOp:
    """The write op of submit / submit_many: checks everything first, then plans
    the new jobs into the batch (written together with the other submits of the
    same group commit)."""

    __slots__ = ("specs", "max_depth", "now", "plain", "key_window")

    def __init__(self, specs, max_depth, now, key_window=0.0):
        self.specs = specs
        self.max_depth = max_depth
        self.now = now
        self.key_window = key_window
        # Nothing to look up in the store: the batch plans these with its others.
        self.plain = max_depth is None and all_plain(specs)

    def __call__(self, b: Batch) -> list[str]:
        if self.plain:
            b.reserve_room(space.jobs_bytes(self.specs))   # see gq.store.lmdb.space
            return b.defer_plain(self.specs)
        specs = self.specs
        results: list[str | None] = [None] * len(specs)
        fresh = []                         # (index, spec) of jobs to create
        key_creator: dict[str, int] = {}   # key -> index of the spec that creates its job
        folded = []                        # (index, creator index): same key, same job
        # 1. idempotency keys and caller-chosen ids
        for i, spec in enumerate(specs):
            if spec.key:
                if spec.key in key_creator:
                    folded.append((i, key_creator[spec.key]))
                    continue
                existing = self._live_key_owner(b, spec.key, self.now, self.key_window)
                if existing is not None:
                    results[i] = existing
                    continue
                key_creator[spec.key] = i
            if spec.id is not None and self._exists(b, spec.id):
                raise rules.id_taken(spec.id)
            fresh.append((i, spec))
        # 2. dependencies: stored and completed, stored and unfinished, or in this batch
        waits = self._check_dependencies(b, fresh) if any(s.depends_on for s in specs) \
            else [False] * len(fresh)
        # 3. the hard depth limit: retries never count here, only new submissions
        if self.max_depth is not None and fresh:
            depth = b.count((S.PENDING, S.SCHEDULED)) - b.requeued()
            rules.check_depth(depth, len(fresh), self.max_depth)
        # 4. room: keep a reserve for running jobs' outcomes (gq.store.lmdb.space)
        if fresh:
            b.reserve_room(sum(space.job_bytes(spec) for _, spec in fresh))
        # 5. plan the rows (nothing below raises a GQError)
        if fresh:
            self._plan(b, fresh, waits, results)
        for i, creator in folded:
            results[i] = results[creator]
        return results

    def _plan(self, b: Batch, fresh, waits, results) -> None:
        """Number, encode and index the new jobs; dependents and idempotency keys
        are the rare extras."""
        rows = b.rows
        ids = plan_specs(b, [spec for _, spec in fresh], waits, self.now)
        dep_prefixes: dict[str, bytes] = {}
        for (i, spec), job_id, unmet in zip(fresh, ids, waits):
            results[i] = job_id
            if unmet:
                id_bytes = job_id.encode()
                for dep in spec.depends_on:   # many jobs often share dependencies
                    prefix = dep_prefixes.get(dep)
                    if prefix is None:
                        prefix = dep_prefixes[dep] = K.dependents_prefix(dep)
                    rows["dependents"].append((prefix + id_bytes, b""))
                b.has_dependents = True
            if spec.key:
                rows["keys"].append((K.idempotency_key(spec.key), job_id.encode()))
                b.planned_keys[spec.key] = job_id
        # a new job may wait on one that already failed, or on a blocked one
        if any(waits) and (b.doomed_dependency or blocking.blocked_count(b.txn, b.db)):
            self._block_new(b, fresh, ids, waits)

    @staticmethod
    def _block_new(b: Batch, fresh, ids, waits) -> None:
        """Mark new pending jobs blocked where a dependency cannot complete; jobs
        of the batch after the batch jobs they depend on."""
        waiting = {job_id: spec for (_, spec), job_id, unmet in zip(fresh, ids, waits)
                   if unmet}
        done: set[str] = set()
        for start in waiting:   # iterative post-order: batch chains can be long
            stack = [(start, False)]
            while stack:
                job_id, deps_done = stack.pop()
                if deps_done:
                    blocking.block_new(b, job_id, waiting[job_id].depends_on)
                    continue
                if job_id in done:
                    continue
                done.add(job_id)
                stack.append((job_id, True))
                stack.extend((dep, False) for dep in waiting[job_id].depends_on
                             if dep in waiting and dep not in done)

    @staticmethod
    def _exists(b: Batch, job_id: str) -> bool:
        return job_id in b.planned or \
            b.txn.get(job_id.encode(), db=b.db["jobs"]) is not None

    def _check_dependencies(self, b: Batch, fresh) -> list[bool]:
        batch_ids = {s.id for s in self.specs if s.id is not None}
        created = {spec.id for _, spec in fresh if spec.id is not None}
        stored: dict[str, int] = {}
        waits = []
        for i, spec in fresh:
            unmet = False
            for dep in spec.depends_on:
                if dep in created or dep in b.planned:
                    unmet = unmet or b.planned.get(dep) != S.COMPLETED
                    continue
                if dep in batch_ids:   # its spec was folded into an existing job by key
                    raise rules.folded_dependency(dep)
                dep_state = stored.get(dep)
                if dep_state is None:   # read each stored dependency once per batch
                    raw = b.txn.get(dep.encode(), db=b.db["jobs"])
                    if raw is None:
                        raise UnknownDependency(spec.id or f"#{i} ({spec.type})", dep)
                    dep_state = stored[dep] = load_record(raw, dep).state
                unmet = unmet or dep_state != S.COMPLETED
                if dep_state in rules.UNSATISFIABLE:
                    b.doomed_dependency = True
            waits.append(unmet)
        return waits

    @staticmethod
    def _live_key_owner(b: Batch, key: str, now: float, window: float) -> str | None:
        """The job that holds idempotency key `key`: one not finished, or one
        completed less than `window` seconds ago."""
        planned = b.planned_keys.get(key)
        if planned is not None:
            return planned
        raw = b.txn.get(K.idempotency_key(key), db=b.db["keys"])
        if raw is None:
            return None
        job_id = bytes(raw).decode()
        owner = b.txn.get(raw, db=b.db["jobs"])
        if owner is None:
            return None
        rec = load_record(owner, job_id)
        if not S.is_terminal(rec.state):
            return job_id
        if rec.state == S.COMPLETED and window > 0 and now - rec.finished_at < window:
            return job_id
        return None
