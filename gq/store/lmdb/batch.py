"""One write transaction of the LMDB store (`Batch`), the read-side twin its
helpers share (`ReadView`), and the reads both use: records (checksum
verified), counts, paused types, running jobs."""

from __future__ import annotations

import time

from gq._core import states as S
from gq._core.codec import JobRecord, decode_record
from gq._core.plan import plan_rows, with_lifetime
from gq._core.seq import SequenceCounter
from gq.errors import JobNotFound, RecordCorrupted
from gq.metrics import PERSISTENCE_ERRORS
from gq.store.rules import ENDED_STATES
from gq.store.lmdb import keys as K
from gq.store.lmdb import blocking, space

PLANNED_TABLES = ("jobs", "ready", "delayed", "listing", "dependents", "keys", "expiry")


def load_record(raw, job_id: str) -> JobRecord:
    """Decode a stored record (checksum verified) and make sure it is the record
    of `job_id`: LMDB keeps no page checksums, so a damaged B-tree page could
    lead a lookup to another job's record, which must never be handed out."""
    try:
        rec = decode_record(raw, job_id)
    except RecordCorrupted:
        PERSISTENCE_ERRORS.inc()
        raise
    if rec.id != job_id:
        PERSISTENCE_ERRORS.inc()
        raise RecordCorrupted(job_id, f"the stored record belongs to job {rec.id!r} "
                                      "(a damaged index page)")
    return rec


class Batch:
    """One write transaction of the group-commit writer, with the state its ops
    share: the sequence counter and the count deltas (written once per
    transaction, not once per job), and the rows of new jobs.

    New jobs are *planned* by submit ops (checked, numbered, encoded) and written
    together, one putmulti per table, when the batch flushes — or earlier, as
    soon as any other op reads the store, so every op sees what came before it.
    """

    __slots__ = ("txn", "store", "db", "_seq", "_count_deltas", "wrote",
                 "rows", "planned", "planned_keys", "ring", "has_dependents", "_paused",
                 "_jobs_cur", "_index_cur", "_plain", "_requeued", "after_commit",
                 "doomed_dependency", "room", "ended")

    def __init__(self, store, txn):
        self.txn = txn
        self.store = store
        self.db = store._db
        self._seq = None
        self._count_deltas: dict[tuple[int, str], int] = {}
        self.wrote = False
        self.rows: dict[str, list] = {name: [] for name in PLANNED_TABLES}
        self.planned: dict[str, int] = {}       # id -> state of jobs planned, not written
        self.planned_keys: dict[str, str] = {}  # idempotency key -> planned job id
        # Plain submissions (nothing to check against the store) wait here and are
        # planned together, one compiled call per batch: [(specs, ids to fill)].
        self._plain: list[tuple[list, list]] = []
        self.ring = False   # wake workers after commit: work became ready, or a cancel
        self.ended = False  # a job ended: wake result waiters once the commit is durable
        self.has_dependents: bool | None = None
        self._paused: frozenset | None = None
        self._requeued = 0    # change of "scheduled jobs that already ran" (see move)
        self.after_commit: list = []   # callables run once the transaction committed
        self.doomed_dependency = False  # a submit named a failed/dead/cancelled job
        self.room: list | None = None    # [free bytes, reserve] once a submit asked
        # Hot paths use cursors and positional arguments: py-lmdb's keyword
        # parsing costs more than the B-tree operation itself.
        self._jobs_cur = txn.cursor(db=store._db["jobs"])
        self._index_cur = txn.cursor(db=store._db["index"])

    # -- reads ----------------------------------------------------------------
    def load(self, job_id: str) -> JobRecord | None:
        if self._plain:
            self.plan_plain()
        if self.planned:
            self.write_planned()
        raw = self._jobs_cur.get(job_id.encode())
        return None if raw is None else load_record(raw, job_id)

    def load_existing(self, job_id: str) -> JobRecord:
        record = self.load(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def requeued(self) -> int:
        """Scheduled jobs that already ran once, including this transaction's changes."""
        raw = self.txn.get(K.META_REQUEUED, db=self.db["meta"])
        return (K.unpack_u64(raw) if raw else 0) + self._requeued

    def count(self, states) -> int:
        """Jobs in any of `states`, including this transaction's changes."""
        if self._plain:
            self.plan_plain()
        total = 0
        for counts in (read_counts(self.txn, self.db), self._count_deltas):
            for (state, _), n in counts.items():
                if state in states:
                    total += n
        return total

    # -- writes (an op calls these only after all its checks passed) -----------
    def take_seq(self, n: int = 1) -> int:
        self.wrote = True
        if self._seq is None:
            raw = self.txn.get(K.META_SEQ, db=self.db["meta"])
            self._seq = SequenceCounter.decode(raw) if raw else SequenceCounter(0)
        return self._seq.take(n)

    def add_count(self, state: int, job_type: str, delta: int) -> None:
        key = (state, job_type)
        self._count_deltas[key] = self._count_deltas.get(key, 0) + delta

    def add_indexes(self, rec: JobRecord) -> None:
        """Enter `rec` (as it is now) into every index but jobs itself."""
        self.wrote = True
        txn, db = self.txn, self.db
        txn.put(K.listing_key(rec.type, rec.state, rec.seq), rec.id.encode(), db=db["listing"])
        if rec.state == S.SCHEDULED:
            if rec.ready_seq:
                txn.put(K.ready_key(rec.ready_seq), K.ready_value(rec.priority, rec.type, rec.id),
                        db=db["ready"], append=True)
                self.ring = True
            else:
                txn.put(K.delayed_key(rec.run_at, rec.seq), rec.id.encode(), db=db["delayed"])
        self.add_count(rec.state, rec.type, 1)

    def remove_indexes(self, rec: JobRecord) -> None:
        """Take `rec` (as it was stored) out of every index but jobs itself."""
        self.wrote = True
        txn, db = self.txn, self.db
        txn.delete(K.listing_key(rec.type, rec.state, rec.seq), db=db["listing"])
        if rec.state == S.SCHEDULED:
            if rec.ready_seq:
                txn.delete(K.ready_key(rec.ready_seq), db=db["ready"])
            else:
                txn.delete(K.delayed_key(rec.run_at, rec.seq), db=db["delayed"])
        self.add_count(rec.state, rec.type, -1)

    def put_record(self, rec: JobRecord) -> None:
        self.wrote = True
        self._jobs_cur.put(rec.id.encode(), rec.encode())

    def move(self, rec: JobRecord, new_state: int, now: float, **changes) -> JobRecord:
        """Change a stored job's state: the gate first (raises before any write),
        then `changes` (other fields), then the old state's index entries out and
        the new state's in, and the record itself.

        The hot path of every claim and completion, so written out flat: the same
        work as remove_indexes(old) + add_indexes(rec), without the copy."""
        old_state, old_ready_seq, old_run_at = rec.state, rec.ready_seq, rec.run_at
        old_started = rec.started_at
        rec.move_to(new_state)                 # InvalidTransition: nothing written yet
        if new_state in ENDED_STATES:
            self.ended = True
        if self._plain:
            self.plan_plain()
        if self.planned:                       # keep ready keys appended in seq order
            self.write_planned()
        self.wrote = True
        for name, value in changes.items():
            setattr(rec, name, value)
        txn, index, index_cur = self.txn, self.db["index"], self._index_cur
        job_type, seq, id_bytes = rec.type, rec.seq, rec.id.encode()
        type_prefix = self.store.listing_prefix(job_type)
        seq_bytes = K.pack_u64(seq)
        # out of the old state's indexes
        txn.delete(type_prefix + K.STATE_BYTES[old_state] + seq_bytes, b"", index)
        if old_state == S.SCHEDULED:
            if old_ready_seq:
                txn.delete(K.ready_key(old_ready_seq), b"", index)
            else:
                txn.delete(K.delayed_key(old_run_at, seq), b"", index)
        deltas = self._count_deltas
        key = (old_state, job_type)
        deltas[key] = deltas.get(key, 0) - 1
        # into the new state's
        index_cur.put(type_prefix + K.STATE_BYTES[new_state] + seq_bytes, id_bytes)
        if new_state == S.SCHEDULED:
            if rec.run_at <= now:
                rec.ready_seq = self.take_seq()
                index_cur.put(K.ready_key(rec.ready_seq),           # append: a fresh seq
                              K.pack_priority(rec.priority) + type_prefix[1:] + id_bytes,
                              True, True, True)
                self.ring = True
            else:
                rec.ready_seq = 0
                index_cur.put(K.delayed_key(rec.run_at, seq), id_bytes)
        else:
            rec.ready_seq = 0
        key = (new_state, job_type)
        deltas[key] = deltas.get(key, 0) + 1
        # Scheduled jobs that already ran (retries, reclaims) are kept out of the
        # max_depth count: accepted work never holds back new submissions.
        if old_state == S.SCHEDULED and old_started > 0:
            self._requeued -= 1
        if new_state == S.SCHEDULED and rec.started_at > 0:
            self._requeued += 1
        rec.updated_at = now
        self._jobs_cur.put(id_bytes, rec.encode())
        if (new_state >= S.FAILED or old_state == S.DEAD_LETTER) and self.dependents_exist():
            blocking.after_move(self, rec, old_state)
        return rec

    def reserve_room(self, needed: int) -> None:
        """Take `needed` bytes for new jobs, or raise StorageFull (nothing written)
        if that would eat into the reserve kept for running jobs (gq.store.lmdb.space)."""
        store = self.store
        if self.room is None:
            self.room = list(space.room(store._env, self.txn,
                                        (self.db["jobs"], self.db["index"]), store.path))
        space.refuse_if_short(self.room[0], self.room[1], needed, store.path)
        self.room[0] -= needed

    def paused_types(self) -> frozenset:
        """The paused job types as this transaction sees them (read once)."""
        if self._paused is None:
            self._paused = read_paused(self.txn, self.db)
        return self._paused

    def forget_paused(self) -> None:
        """The paused types changed in this transaction: read them again."""
        self._paused = None

    def dependents_exist(self) -> bool:
        """Whether any job waits on another at all (read once per transaction), so
        completions skip the dependents scan in the common case."""
        if self.has_dependents is None:
            with self.txn.cursor(db=self.db["dependents"]) as cur:
                self.has_dependents = bool(cur.set_range(K.DEPENDENTS)) and \
                    bytes(cur.key()).startswith(K.DEPENDENTS)
        return self.has_dependents

    def defer_plain(self, specs) -> list[str]:
        """Take plain submissions (generated ids, no key, no dependencies, no
        depth limit) to plan with the batch's others; returns their id list,
        filled in before the batch commits."""
        ids: list[str] = []
        self._plain.append((specs, ids))
        return ids

    def plan_plain(self) -> None:
        """Number, encode and index every deferred plain submission at once
        (created now: after each caller's call, before any of them returns)."""
        deferred, self._plain = self._plain, []
        specs = [spec for op_specs, _ in deferred for spec in op_specs]
        ids = plan_specs(self, specs, [False] * len(specs), time.time())
        start = 0
        for op_specs, op_ids in deferred:
            op_ids.extend(ids[start:start + len(op_specs)])
            start += len(op_specs)

    def write_planned(self) -> None:
        """Write the planned new jobs: one C-level putmulti per table."""
        txn, db, rows = self.txn, self.db, self.rows
        self.wrote = True
        with txn.cursor(db=db["jobs"]) as cur:
            consumed, added = cur.putmulti(rows["jobs"], overwrite=False)
        if added != consumed:   # a generated id already stored: impossible by design
            raise RuntimeError("a generated job id collided with a stored job")
        if rows["ready"]:       # fresh seqs sort after every stored key: append
            with txn.cursor(db=db["ready"]) as cur:
                cur.putmulti(rows["ready"], append=True)
            self.ring = True
        for name in ("listing", "delayed", "dependents", "keys", "expiry"):
            if rows[name]:
                with txn.cursor(db=db[name]) as cur:
                    cur.putmulti(rows[name])
        for table in rows.values():
            table.clear()
        self.planned.clear()
        self.planned_keys.clear()

    def flush(self) -> None:
        """Write planned jobs, the counter and the count deltas; once, before commit."""
        if self._plain:
            self.plan_plain()
        if self.planned:
            self.write_planned()
        txn, db = self.txn, self.db
        if self._seq is not None:
            txn.put(K.META_SEQ, self._seq.encode(), db=db["meta"])
        if self._requeued:
            txn.put(K.META_REQUEUED, K.pack_u64(max(0, self.requeued())), db=db["meta"])
            self._requeued = 0
        for (state, job_type), delta in self._count_deltas.items():
            if not delta:
                continue
            key = K.count_key(state, job_type)
            raw = txn.get(key, db=db["meta"])
            n = (K.unpack_u64(raw) if raw else 0) + delta
            if n > 0:
                txn.put(key, K.pack_u64(n), db=db["meta"])
            else:
                txn.delete(key, db=db["meta"])


def plan_specs(b: Batch, specs, waits, now: float) -> list[str]:
    """Number, encode and index new jobs into the batch's planned rows (the loop
    is compiled: gq._core.plan); returns their ids."""
    rows = b.rows
    counts: dict[tuple[int, str], int] = {}
    first_seq = b.take_seq(len(specs))
    ids = plan_rows(specs, waits, first_seq, b.store.tag, now,
                    b.store.listing_prefixes, rows["jobs"], rows["listing"],
                    rows["ready"], rows["delayed"], b.planned, counts)
    for (state, job_type), n in counts.items():
        b.add_count(state, job_type, n)
    for n in with_lifetime(specs):   # lifetimes: their deadline index (gq.store.lmdb.expiry)
        rows["expiry"].append((K.expiry_key(now + specs[n].lifetime, first_seq + n),
                               ids[n].encode()))
    return ids


class ReadView:
    """The two things running_records needs from a Batch, over a read transaction."""

    def __init__(self, store, txn):
        self.store, self.txn, self.db = store, txn, store._db

    def load(self, job_id):
        raw = self.txn.get(job_id.encode(), db=self.db["jobs"])
        return None if raw is None else load_record(raw, job_id)


def running_records(b: Batch):
    """Every running job, through the listing index (one prefix per type)."""
    types = {t for (st, t), n in read_counts(b.txn, b.db).items() if st == S.RUNNING}
    ids = []
    with b.txn.cursor(db=b.db["listing"]) as cur:
        for job_type in sorted(types):
            prefix = K.listing_prefix(job_type, S.RUNNING)
            if cur.set_range(prefix):
                for key, value in cur:
                    if not bytes(key).startswith(prefix):
                        break
                    ids.append(bytes(value).decode())
    for job_id in ids:
        rec = b.load(job_id)
        if rec is not None and rec.state == S.RUNNING:
            yield rec

def read_counts(txn, db) -> dict[tuple[int, str], int]:
    """Jobs per (state, type): the counters, not a scan."""
    out = {}
    with txn.cursor(db=db["meta"]) as cur:
        if cur.set_range(K.COUNT_PREFIX):
            for key, value in cur:
                if not bytes(key).startswith(K.COUNT_PREFIX):
                    break
                out[K.parse_count_key(key)] = K.unpack_u64(value)
    return out


def read_paused(txn, db) -> frozenset:
    out = set()
    with txn.cursor(db=db["meta"]) as cur:
        if cur.set_range(K.PAUSED):
            for key in cur.iternext(values=False):
                if not bytes(key).startswith(K.PAUSED):
                    break
                out.add(bytes(key[len(K.PAUSED):]).decode())
    return frozenset(out)
