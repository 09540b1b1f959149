"""A full store, for real: a small LMDB map, and a small tmpfs under a default map.

Every refused submit gets StorageFull; nothing acknowledged is lost; the jobs
running when the store filled can still record their outcomes (submissions stop
at a reserve, transitions may use it); and once `gq purge` frees space,
submissions are accepted again without a restart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

import gq
from gq._core import states as S

PAD = "x" * 300


def claim_all(q, owner):
    rows = q.store.ready_after(0, 100_000)
    return q.store.claim([(row[3], row[0]) for row in rows], owner=owner,
                         lease_deadline=time.monotonic() + 300, now=time.time())


def finish(q, rec, owner, result: bytes):
    q.store.finish(rec.id, attempt=rec.attempts, owner=owner, state=S.COMPLETED,
                   now=time.time(), result=result)


def purge_cli(data_dir):
    out = subprocess.run([sys.executable, "-m", "gq.cli", "purge", "--data", data_dir,
                          "--older-than", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("purged ")
    return int(out.stdout.split()[1])


def fill_until_full(q, acked: dict) -> int:
    """Submit until refused; every refusal must be StorageFull. Returns how many
    refusals were seen (single, batch and async submits)."""
    refused = 0
    for i in range(1_000_000):
        try:
            acked[q.submit("fill", {"i": i, "pad": PAD})] = {"i": i, "pad": PAD}
        except gq.StorageFull as e:
            refused += 1
            assert "purge" in str(e)
            break
    assert refused == 1, "the store never filled"
    for attempt in (
            lambda: q.submit("fill", {"again": True}),
            lambda: q.submit_many([{"type": "fill", "payload": {"n": n}} for n in range(5)]),
            lambda: asyncio.run(q.asubmit("fill", {"async": True}))):
        with pytest.raises(gq.StorageFull):
            attempt()
        refused += 1
    return refused


def scenario(data_dir, **options):
    acked: dict[str, dict] = {}
    with gq.Queue(data_dir, **options) as q:
        # finished work the purge will free, and work that will be running
        done = [q.submit("done", {"n": n, "pad": PAD}) for n in range(400)]
        for rec in claim_all(q, "w1"):
            finish(q, rec, "w1", b'"ok"')
        for n in range(20):
            acked[q.submit("run", {"n": n})] = {"n": n}
        running = claim_all(q, "w2")
        assert len(running) == 20

        refused = fill_until_full(q, acked)

        # the running jobs can still finish, with results, out of the reserve
        for rec in running:
            finish(q, rec, "w2", b'"' + b"r" * 500 + b'"')
        assert q.stats()["by_state"]["completed"] == len(done) + 20
        with pytest.raises(gq.StorageFull):
            q.submit("fill", {"still": "full"})
        refused += 1

        assert purge_cli(data_dir) == len(done) + 20     # `gq purge` in its own process
        for rid in [r.id for r in running]:
            acked.pop(rid)
        after = q.submit("fill", {"after": "purge"})       # resumes on its own
        acked[after] = {"after": "purge"}
        for n in range(50):
            acked[q.submit("fill", {"more": n})] = {"more": n}

        for jid, payload in acked.items():
            assert q.get(jid).payload == payload
    with gq.Queue(data_dir, **options) as q:                # and after reopening
        for jid, payload in acked.items():
            assert q.get(jid).payload == payload
        assert q.stats()["total"] == len(acked)
    check = subprocess.run([sys.executable, "-m", "gq.cli", "check", "--data", data_dir],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    return len(acked), refused


def test_small_map(data_dir):
    acked, refused = scenario(data_dir, map_size=2 << 20)
    print(f"map 2 MiB: {acked} acknowledged jobs kept, {refused} submits refused "
          "with StorageFull")


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_small_tmpfs_under_a_default_map(small_tmpfs):
    data_dir = os.path.join(small_tmpfs, "gq-data")
    acked, refused = scenario(data_dir)
    st = os.statvfs(small_tmpfs)
    print(f"tmpfs 3 MiB: {acked} acknowledged jobs kept, {refused} submits refused with "
          f"StorageFull, {st.f_bavail * st.f_frsize // 1024} KiB free at the end")


def test_enospc_itself_is_storage_full_and_the_store_recovers(small_tmpfs, monkeypatch):
    """Without the reserve (as when another program fills the disk between the
    check and the write) LMDB's own ENOSPC comes back as StorageFull, the
    environment is reopened, nothing acknowledged is lost, and the store works
    again once space is freed."""
    from gq.store.lmdb import space
    monkeypatch.setattr(space, "refuse_if_short", lambda *args: None)
    data_dir = os.path.join(small_tmpfs, "gq-data")
    acked = {}
    with gq.Queue(data_dir) as q:
        done = [q.submit("done", {"n": n, "pad": PAD}) for n in range(400)]
        for rec in claim_all(q, "w1"):
            finish(q, rec, "w1", b"1")
        reopens = q.store.reopens
        refused = fill_until_full(q, acked)
        assert q.store.reopens > reopens, "ENOSPC in a commit reopens the environment"
        assert purge_cli(data_dir) == len(done)
        acked[q.submit("fill", {"after": "purge"})] = {"after": "purge"}
        for jid, payload in acked.items():
            assert q.get(jid).payload == payload
    print(f"ENOSPC: {len(acked)} acknowledged jobs kept, {refused} submits refused")
