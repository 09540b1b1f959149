"""A full LMDB map: every refused submit gets StorageFull, nothing acknowledged is
lost or changed, and the store stays usable for reads."""

from __future__ import annotations

import gq

MAP_SIZE = 1 << 20          # 1 MiB: fills after a few thousand small jobs


def test_full_map_refuses_with_storage_full_and_keeps_everything(data_dir):
    acked = {}
    refused = 0
    with gq.Queue(data_dir, map_size=MAP_SIZE) as q:
        for i in range(100_000):
            try:
                jid = q.submit("fill", {"i": i, "pad": "x" * 200})
            except gq.StorageFull as e:
                refused += 1
                assert "full" in str(e) and "map_size" in str(e)
                if refused >= 5:
                    break
            else:
                acked[jid] = i
        assert refused == 5 and len(acked) > 100
        with_many = None
        try:
            with_many = q.submit_many([{"type": "fill", "payload": {"big": "y" * 5000}}
                                       for _ in range(50)])
        except gq.StorageFull:
            pass
        assert with_many is None
        stats = q.stats()
        assert stats["total"] == len(acked)
    with gq.Queue(data_dir, map_size=MAP_SIZE) as q:       # reopen: all intact
        for jid, i in acked.items():
            assert q.get(jid).payload == {"i": i, "pad": "x" * 200}
    with gq.Queue(data_dir, map_size=MAP_SIZE * 4) as q:   # a bigger map: accepted again
        assert q.get(q.submit("fill", {"after": True})).payload == {"after": True}
