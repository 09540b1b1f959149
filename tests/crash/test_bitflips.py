"""200 single-byte flips, each on a fresh copy of a real data file.

Each copy is scanned in a subprocess (LMDB keeps no page checksums: a flip in a
B-tree page can crash the scanning process, which is why `gq check` runs apart
from workers). Whatever happens, no job may ever be read back with a wrong
payload: every read is either the exact payload or a clear error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import gq

ROUNDS = int(os.environ.get("GQ_FLIP_ROUNDS", "200"))

SCAN = r"""
import json, sys
import gq
data, expected_path = sys.argv[1], sys.argv[2]
expected = json.load(open(expected_path))
try:
    q = gq.Queue(data)
except gq.GQError as e:
    print(json.dumps({"refused": str(e)[:200]})); sys.exit(0)
wrong, unreadable = [], 0
for job_id, payload in expected.items():
    try:
        got = q.get(job_id).payload
    except gq.GQError:
        unreadable += 1
        continue
    if got != payload:
        wrong.append(job_id)
try:
    ok = q.store.check().ok
except Exception as e:
    ok = False
print(json.dumps({"wrong": wrong, "unreadable": unreadable, "check_ok": ok}))
"""


def test_single_byte_flips_never_hand_out_a_wrong_payload(tmp_path, rng):
    source = str(tmp_path / "source")
    expected = {}
    with gq.Queue(source) as q:
        for i in range(200):
            payload = {"n": i, "text": f"payload-{i:04d}-" + "abcdefgh" * (i % 7)}
            expected[q.submit(f"type{i % 3}", payload, priority=i % 5)] = payload
        for job_id in list(expected)[:20]:
            q.cancel(job_id)
    expected_path = str(tmp_path / "expected.json")
    with open(expected_path, "w") as f:
        json.dump(expected, f)
    size = os.path.getsize(os.path.join(source, "data.mdb"))
    tally = {"detected": 0, "harmless": 0, "crashed": 0, "hung": 0}
    crash_codes: list[int] = []
    for r in range(ROUNDS):
        copy = str(tmp_path / f"copy{r}")
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("wake", "instances"))
        offset = rng.randrange(size)
        with open(os.path.join(copy, "data.mdb"), "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
        try:
            out = subprocess.run([sys.executable, "-c", SCAN, copy, expected_path],
                                 capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            tally["hung"] += 1
            continue
        finally:
            shutil.rmtree(copy, ignore_errors=True)
        if out.returncode != 0:
            assert out.returncode < 0 or "Traceback" in out.stderr, out.stderr
            # e.g. -7 (SIGBUS): LMDB followed a damaged page number past the end
            # of the file. The scan is a process of its own for exactly this.
            tally["crashed"] += 1
            crash_codes.append(out.returncode)
            continue
        result = json.loads(out.stdout)
        if "refused" in result:
            tally["detected"] += 1
            continue
        assert result["wrong"] == [], (
            f"flip at offset {offset} handed out wrong payloads for {result['wrong']} "
            f"({rng})")
        if result["unreadable"] or not result["check_ok"]:
            tally["detected"] += 1
        else:
            tally["harmless"] += 1
    print(f"{ROUNDS} single-byte flips: {tally}; scanner exit codes of crashes: "
          f"{crash_codes}")
    assert tally["hung"] == 0, tally
