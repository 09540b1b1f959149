"""The PostgreSQL write op of submit / submit_many: every check first (keys, ids,
dependencies, depth), then the new jobs are planned into the transaction and
go in with ONE multi-row INSERT for all its submits (gq.store.postgres.insert)."""

from __future__ import annotations

from gq._core import states as S
from gq._core.plan import all_plain
from gq.errors import UnknownDependency
from gq.store import rules
from gq.store.postgres import scheduling as pg_scheduling
from gq.store.postgres import sql
from gq.store.postgres.tx import Planned, Tx

_ACTIVE = (S.PENDING, S.SCHEDULED)


class SubmitOp:
    """The write op of submit / submit_many: every check first, then the new jobs
    are planned into the transaction (one multi-row INSERT for all its submits)."""

    __slots__ = ("specs", "max_depth", "now", "key_window")

    def __init__(self, specs, max_depth, now, key_window=0.0):
        self.specs = specs
        self.max_depth = max_depth
        self.now = now
        self.key_window = key_window

    def __call__(self, tx: Tx) -> list[str]:
        specs = self.specs
        results: list = [None] * len(specs)
        if self.max_depth is None and all_plain(specs):
            # plain jobs (the common case): nothing to check, each one scheduled
            planned, now = tx.planned, self.now
            for i, spec in enumerate(specs):
                p = Planned(spec, S.SCHEDULED, now)
                p.slots.append((results, i))
                planned.append(p)
            return results
        fresh = []                              # (index, spec) of jobs to create
        key_creator: dict[str, int] = {}
        folded = []                             # (index, creator index)
        keys = [s.key for s in specs if s.key and s.key not in tx.planned_keys]
        # a key is held by its unfinished job, or one completed within key_window
        # (the unfinished one, last in this order, wins)
        owners = dict(tx.rows("SELECT key, id FROM gq_jobs WHERE key = ANY(%s) "
                              f"AND (state IN {sql.UNFINISHED} OR (state = {sql.COMPLETED} "
                              "AND %s > 0 AND finished_at > %s)) ORDER BY state DESC",
                              (keys, self.key_window, self.now - self.key_window))) \
            if keys else {}
        named = [s.id for s in specs if s.id is not None]
        taken = {r[0] for r in tx.rows("SELECT id FROM gq_jobs WHERE id = ANY(%s)",
                                       (named,))} if named else set()
        shares: list[tuple[int, Planned]] = []
        for i, spec in enumerate(specs):
            if spec.key:
                if spec.key in key_creator:
                    folded.append((i, key_creator[spec.key]))
                    continue
                if spec.key in tx.planned_keys:
                    shares.append((i, tx.planned_keys[spec.key]))
                    continue
                if spec.key in owners:
                    results[i] = owners[spec.key]
                    continue
                key_creator[spec.key] = i
            if spec.id is not None and (spec.id in taken or spec.id in tx.planned_ids):
                raise rules.id_taken(spec.id)
            fresh.append((i, spec))
        waits = check_dependencies(tx, specs, fresh)
        if self.max_depth is not None and fresh:
            # One depth check at a time per store: the limit holds across processes.
            tx.rows("SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"gq-depth:{tx.store.schema}",))
            depth = tx.rows("SELECT coalesce(sum(n), 0)::int8 FROM gq_counts "
                            f"WHERE state IN {sql.WAITING}")[0][0]
            depth -= tx.rows(pg_scheduling.REQUEUED_SQL)[0][0]   # retries do not count
            depth += sum(1 for p in tx.planned if p.state in _ACTIVE)
            rules.check_depth(depth, len(fresh), self.max_depth)
        # plan (nothing below raises a GQError)
        by_index: dict[int, Planned] = {}
        for (i, spec), unmet in zip(fresh, waits):
            p = Planned(spec, S.PENDING if unmet else S.SCHEDULED, self.now)
            p.slots.append((results, i))
            tx.planned.append(p)
            by_index[i] = p
            if spec.id is not None:
                tx.planned_ids[spec.id] = p
            if spec.key:
                tx.planned_keys[spec.key] = p
            if unmet:
                tx.planned_dependents.extend((dep, p) for dep in spec.depends_on)
        for i, creator in folded:
            if creator in by_index:
                by_index[creator].slots.append((results, i))
            else:
                results[i] = results[creator]
        for i, p in shares:
            p.slots.append((results, i))
        return results


def check_dependencies(tx: Tx, specs, fresh) -> list[bool]:
    """Whether each fresh job waits (some dependency not completed). Stored
    dependencies are read FOR SHARE: their completion (an UPDATE) then waits for
    this commit, and releases the dependents this transaction adds."""
    if not any(spec.depends_on for _, spec in fresh):
        return [False] * len(fresh)
    batch_ids = {s.id for s in specs if s.id is not None}
    created = {spec.id for _, spec in fresh if spec.id is not None}
    wanted = sorted({d for _, s in fresh for d in s.depends_on
                     if d not in created and d not in tx.planned_ids})
    stored = dict(tx.rows("SELECT id, state FROM gq_jobs WHERE id = ANY(%s) ORDER BY id "
                          "FOR SHARE", (wanted,))) if wanted else {}
    waits = []
    for i, spec in fresh:
        unmet = False
        for dep in spec.depends_on:
            if dep in created or dep in tx.planned_ids:
                unmet = True
                continue
            if dep in batch_ids:
                raise rules.folded_dependency(dep)
            if dep not in stored:
                raise UnknownDependency(spec.id or f"#{i} ({spec.type})", dep)
            unmet = unmet or stored[dep] != S.COMPLETED
        waits.append(unmet)
    return waits
