"""Headroom: refuse new jobs while there is still room to finish the running ones.

When the LMDB map or the disk under it fills up, a completion that cannot be
written is as bad as a lost job: its handler ran, its outcome is gone, it will
run again. So submissions stop *before* the store is full: once the room left
falls below a reserve, a submit is refused with `StorageFull` (nothing
written), while claims, completions, retries and purges still use the reserve.
The room is measured afresh for every write transaction, so submissions
resume by themselves as soon as space is freed (a purge, a bigger disk).

Room = pages free inside the data file (freed by earlier transactions; LMDB
reuses them) + pages the file may still grow by (the smaller of what the map
and the filesystem allow).
"""

from __future__ import annotations

import os

from gq._core.plan import specs_bytes
from gq.errors import StorageFull

RESERVE_MAX = 8 << 20        # bytes kept for running jobs' outcomes on a big store...
RESERVE_FRACTION = 16        # ...and at most 1/16 of what the store can hold
FIXED_PAGES = 3              # two meta pages and the main DB's page
JOB_OVERHEAD = 400           # header, id, index entries of one job (bytes, generous)


def room(env, txn, dbs, path: str) -> tuple[int, int]:
    """(bytes the store can still take, bytes kept in reserve), as `txn` sees it."""
    psize = txn.stat(dbs[0])["psize"]
    info = env.info()
    in_file = info["last_pgno"] + 1
    used = FIXED_PAGES
    for db in dbs:
        st = txn.stat(db)
        used += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
    try:
        fs = os.statvfs(path)
        disk_pages = fs.f_bavail * fs.f_frsize // psize
    except OSError:
        disk_pages = 1 << 62
    growth = max(0, min(info["map_size"] // psize - in_file, disk_pages))
    capacity = (in_file + growth) * psize
    free = (max(0, in_file - used) + growth) * psize
    return free, min(RESERVE_MAX, capacity // RESERVE_FRACTION)


def job_bytes(spec) -> int:
    """What one new job will take in the store, roughly (B-tree slack included)."""
    return (len(spec.payload) + len(spec.type) + len(spec.id or "") + JOB_OVERHEAD) * 3 // 2


def jobs_bytes(specs: list) -> int:
    """sum(job_bytes(spec) for spec in specs), compiled: every plain batch asks."""
    return specs_bytes(specs, JOB_OVERHEAD)


def refuse_if_short(free: int, reserve: int, needed: int, path: str) -> None:
    if free - needed < reserve:
        raise StorageFull(
            f"the store at {path} is nearly full ({free // 1024:,} KiB left, "
            f"{reserve // 1024:,} KiB kept so running jobs can finish); the job was not "
            "stored. Purge finished jobs (`gq purge --older-than ...`), free disk space or "
            "reopen with a larger map_size; submissions resume once there is room"
        )
