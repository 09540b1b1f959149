"""A submitting process for the crash tests: prints one line per acknowledged job.

    python submitter.py DATA_DIR MODE COUNT TAG

MODE: single (submit), batch (submit_many of 10), async (64 concurrent asubmit).
Each line is "ACK <id> <tag>:<n>" printed only after the call that stored the job
returned, i.e. after its commit was synced. The payload is derived from tag:n so
the parent can check every byte survived.
"""

import asyncio
import sys

import gq


def payload(name: str) -> dict:
    return {"name": name, "blob": name * 20, "n": [len(name), 2**40]}


def main() -> None:
    data, mode, count, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    q = gq.Queue(data)
    out = sys.stdout
    if mode == "single":
        for n in range(count):
            name = f"{tag}:{n}"
            jid = q.submit("crash.test", payload(name), priority=n % 7)
            out.write(f"ACK {jid} {name}\n")
            out.flush()
    elif mode == "batch":
        for start in range(0, count, 10):
            names = [f"{tag}:{n}" for n in range(start, start + 10)]
            ids = q.submit_many([{"type": "crash.test", "payload": payload(x)} for x in names])
            out.write("".join(f"ACK {j} {x}\n" for j, x in zip(ids, names)))
            out.flush()
    elif mode == "async":
        async def one(n):
            name = f"{tag}:{n}"
            jid = await q.asubmit("crash.test", payload(name))
            out.write(f"ACK {jid} {name}\n")
            out.flush()

        async def run():
            for start in range(0, count, 64):
                await asyncio.gather(*(one(n) for n in range(start, min(count, start + 64))))
        asyncio.run(run())
    else:
        raise SystemExit(f"unknown mode {mode}")
    q.close()


if __name__ == "__main__":
    main()
