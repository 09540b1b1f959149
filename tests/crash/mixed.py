"""A process that submits jobs and runs them at once, for the kill-loop test.

    python mixed.py DATA_DIR LEDGER

reads commands on stdin, one a line, answering each on stdout:

    spawn OUT TAG SUBMIT   fork a child that runs the load (output to file OUT);
                           answers its pid
    wait PID               reap that child; answers its exit code

The parent has imported everything already, so a child starts in milliseconds
and a kill loop spends its time killing, not importing. Each child opens its
own store (after the fork, as gq requires) and runs one event loop with a
gq.Worker (concurrency 8, async and sync handlers) and, if SUBMIT is 1, a
submitter: bursts of concurrent `asubmit`s and `asubmit_many` batches. Each
submitted job is printed "ACK <id>" only after the call that stored it returned
(its commit is synced). Each handler run appends "<id> <attempt> <pid>" to
LEDGER with one write(2) on an O_APPEND descriptor and fsyncs it before
returning, so the ledger holds every execution whose outcome could have been
recorded. SIGTERM drains a child gracefully.
"""

import asyncio
import os
import sys

import gq
from gq.logs import configure_logging

q = None
LEDGER = -1
TAG = ""


def record(job) -> None:
    os.write(LEDGER, f"{job.id} {job.attempt} {os.getpid()}\n".encode())
    os.fsync(LEDGER)


def register(queue) -> None:
    queue.handler("kill.async")(run_async)
    queue.handler("kill.sync")(run_sync)


async def run_async(job):
    await asyncio.sleep(job.payload["ms"] / 1000)
    record(job)
    return job.payload["n"]


def run_sync(job):
    record(job)
    return job.payload["n"]


def ack(ids) -> None:
    sys.stdout.write("".join(f"ACK {jid}\n" for jid in ids))
    sys.stdout.flush()


async def submitter() -> None:
    n = 0
    while True:
        async def one(i):
            jid = await q.asubmit("kill.async", {"n": i, "ms": i % 20, "tag": TAG})
            ack([jid])
        await asyncio.gather(*(one(n + i) for i in range(16)))
        n += 16
        ids = await q.asubmit_many([{"type": "kill.sync", "payload": {"n": n + i, "tag": TAG}}
                                    for i in range(8)])
        ack(ids)
        n += 8
        await asyncio.sleep(0.01)


async def main(submit: bool) -> int:
    worker = gq.Worker(q, concurrency=8)
    serving = asyncio.create_task(worker.serve(handle_signals=True))   # SIGTERM: drain
    feeding = asyncio.create_task(submitter()) if submit else None
    code = await serving
    if feeding is not None:
        feeding.cancel()
    return code


def child(data: str, ledger: str, out: str, tag: str, submit: bool) -> int:
    global q, LEDGER, TAG
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    configure_logging()
    LEDGER = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    TAG = tag
    q = gq.Queue(data)
    register(q)
    import uvloop
    return uvloop.run(main(submit))


def zygote(data: str, ledger: str) -> None:
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "spawn":
            out, tag, submit = args
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = child(data, ledger, out, tag, submit == "1")
                finally:
                    os._exit(code)
            print(pid, flush=True)
        elif cmd == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    import uvloop  # noqa: F401  (imported once here, not in every child)
    import gq.runtime.worker  # noqa: F401
    zygote(sys.argv[1], sys.argv[2])
