"""Opening a data dir: every way it can be unusable gets DataDirError, and a
store written by a different format version is refused rather than misread."""

from __future__ import annotations

import os
import subprocess
import sys

import lmdb
import pytest

import gq


def test_missing_dir_is_created(tmp_path):
    path = tmp_path / "a" / "b" / "data"
    with gq.Queue(str(path)) as q:
        q.submit("a")
    assert (path / "data.mdb").exists()


def test_data_dir_is_a_file(tmp_path):
    path = tmp_path / "data"
    path.write_text("not a dir")
    with pytest.raises(gq.DataDirError, match="is a file, not a directory"):
        gq.Queue(str(path))


def test_parent_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(gq.DataDirError, match="cannot create data dir"):
        gq.Queue(str(tmp_path / "f" / "data"))


def test_read_only_mount(read_only_mount):
    with pytest.raises(gq.DataDirError, match="not writable"):
        gq.Queue(str(read_only_mount / "data"))
    with pytest.raises(gq.DataDirError, match="cannot create|not writable"):
        gq.Queue(str(read_only_mount / "fresh"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits; "
                    "the read-only mount test covers root")
def test_unwritable_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    path.chmod(0o500)
    with pytest.raises(gq.DataDirError, match="not writable"):
        gq.Queue(str(path))


def test_incompatible_format_version(data_dir):
    with gq.Queue(data_dir) as q:
        jid = q.submit("a", {"x": 1})
    env = lmdb.open(data_dir, max_dbs=16)
    meta = env.open_db(b"index")
    with env.begin(write=True) as txn:
        txn.put(b"Mformat", b"99", db=meta)
    env.close()
    with pytest.raises(gq.DataDirError, match="format 99; this gq reads format 1"):
        gq.Queue(data_dir)
    env = lmdb.open(data_dir, max_dbs=16)
    meta = env.open_db(b"index")
    with env.begin(write=True) as txn:
        txn.put(b"Mformat", b"1", db=meta)
    env.close()
    with gq.Queue(data_dir) as q:
        assert q.get(jid).payload == {"x": 1}


def test_not_an_lmdb_file(data_dir):
    os.makedirs(data_dir)
    with open(os.path.join(data_dir, "data.mdb"), "wb") as f:
        f.write(os.urandom(64 * 1024))
    with pytest.raises(gq.DataDirError):
        gq.Queue(data_dir)


def test_queue_refuses_use_after_fork(data_dir):
    code = f"""
import os, sys, gq
q = gq.Queue({data_dir!r})
q.submit("a")
pid = os.fork()
if pid == 0:
    try:
        q.submit("b")
    except gq.GQError as e:
        print("child refused:", e)
    q2 = gq.Queue({data_dir!r})
    q2.submit("c")
    q2.close()
    os._exit(0)
os.waitpid(pid, 0)
print(sorted(q.stats()["by_type"]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "child refused: this Queue was opened in a parent process" in out.stdout, out.stderr
    assert "['a', 'c']" in out.stdout
