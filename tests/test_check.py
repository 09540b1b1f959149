"""`gq check` on a real store: clean, a flipped byte in a record, a broken index."""

from __future__ import annotations

import json
import subprocess
import sys

import lmdb

import gq

MARKER = "unique-marker-0123456789"


def check(data):
    out = subprocess.run([sys.executable, "-m", "gq.cli", "check", "--json", "--data", data],
                         capture_output=True, text=True, timeout=60)
    return out.returncode, json.loads(out.stdout)


def make_store(data):
    with gq.Queue(data) as q:
        victim = q.submit("a", {"note": MARKER})
        q.submit("a", {"note": "fine"}, delay=60)
        q.submit_many([{"type": "b", "payload": i} for i in range(20)])
    return victim


def test_clean_store_passes(tmp_path):
    data = str(tmp_path / "d")
    make_store(data)
    rc, report = check(data)
    assert rc == 0 and report["ok"] and report["records"] == 22


def test_flipped_byte_in_a_record_is_reported_by_id(tmp_path, flip_byte):
    data = str(tmp_path / "d")
    victim = make_store(data)
    flip_byte(data, MARKER, 3, 0x01)
    rc, report = check(data)
    assert rc == 3 and not report["ok"]
    assert [d["id"] for d in report["damaged"]] == [victim]
    assert "checksum" in report["damaged"][0]["reason"]
    with gq.Queue(data) as q:      # reading it names the job; the others are intact
        try:
            q.get(victim)
            raise AssertionError("a damaged record was read without error")
        except gq.RecordCorrupted as e:
            assert victim in str(e)
        assert len(q.list(type="b")) == 20


def test_missing_index_entry_is_reported(tmp_path):
    data = str(tmp_path / "d")
    make_store(data)
    env = lmdb.open(data, max_dbs=8)
    index = env.open_db(b"index")
    with env.begin(write=True) as txn:
        with txn.cursor(db=index) as cur:
            assert cur.set_range(b"r")          # drop one ready entry
            cur.delete()
    env.close()
    rc, report = check(data)
    assert rc == 3
    assert any("ready entry missing" in p for p in report["index_problems"])
