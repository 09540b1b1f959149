"""HTTP submit rate on loopback, with and without a bearer token.

    python -m benchmarks.http_submit [--quick] [--dir DIR] [--json OUT]

A `gq worker --http 127.0.0.1:0` subprocess (one process) serves; this process
runs CLIENTS concurrent aiohttp clients posting small jobs for SECONDS, first
without a token, then against a worker started with `--token`. Beside them, two
ceilings from the same run: `GET /healthz` with the same clients and server (HTTP
doing no work), and the same number of concurrent in-process `asubmit` callers
on a store of the same disk (the group commit that HTTP submits share). Submitted jobs are of a
type the worker has no handler for, so only submission is measured.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import gq

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = 64
SECONDS = 5.0
TOKEN = "bench-token-0123456789abcdef"

# `gq worker benchmarks.http_submit:q` imports this module in the worker process.
q = None
if os.environ.get("GQ_BENCH_DATA"):
    q = gq.Queue(os.environ["GQ_BENCH_DATA"])

    @q.handler("bench.unused")
    async def unused(job):
        return None


async def _clients(base: str, seconds: float, clients: int, token: str | None,
                   path: str = "/v1/jobs") -> dict:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    done = errors = 0
    deadline = time.perf_counter() + seconds
    latencies = []

    async def client(session, n):
        nonlocal done, errors
        i = 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            if path == "/v1/jobs":
                request = session.post(base + path, headers=headers,
                                       data=b'{"type": "bench.http", "payload": {"n": %d}}'
                                       % (n * 1_000_000 + i))
            else:
                request = session.get(base + path)
            async with request as r:
                await r.read()
                if r.status in (200, 201):
                    done += 1
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1
            i += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session, n) for n in range(clients)))
        took = time.perf_counter() - start
    latencies.sort()
    return {"per_s": round(done / took), "errors": errors,
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1)
            if latencies else None}


def _serve(data: str, token: str | None):
    env = dict(os.environ, GQ_BENCH_DATA=data, PYTHONPATH=os.path.dirname(HERE))
    env.pop("GQ_TOKEN", None)
    cmd = [sys.executable, "-m", "gq.cli", "worker", "benchmarks.http_submit:q", "--data",
           data, "--http", "127.0.0.1:0"]
    if token:
        cmd += ["--token", token]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"on http://([^/\s]+)/", line)
        if m:   # keep reading its log, so the worker never blocks on a full pipe
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, f"http://{m.group(1)}"
    raise RuntimeError("the worker did not start its HTTP server")


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _asubmit_rate(data: str, seconds: float, clients: int) -> int:
    queue = gq.Queue(data)
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(n):
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            await queue.asubmit("bench.inproc", {"n": n * 1_000_000 + i})
            done += 1
            i += 1
    start = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(clients)))
    rate = done / (time.perf_counter() - start)
    queue.close()
    return round(rate)


def main(argv=None) -> dict:
    from benchmarks.baselines import bench_args, write_json

    args, base = bench_args(__doc__.splitlines()[0], argv)
    seconds = 1.5 if args.quick else SECONDS
    figures = {"clients": CLIENTS, "seconds": seconds}
    try:
        for label, token in (("no_token", None), ("token", TOKEN)):
            data = os.path.join(base, f"http-{label}")
            proc, url = _serve(data, token)
            try:
                if token is None:   # the same server and client doing no work: the ceiling
                    ceiling = asyncio.run(_clients(url, seconds, CLIENTS, None, "/healthz"))
                    figures["http_healthz_per_s"] = ceiling["per_s"]
                    print(f"HTTP GET /healthz: {ceiling}", flush=True)
                result = asyncio.run(_clients(url, seconds, CLIENTS, token))
            finally:
                _stop(proc)
            for key, value in result.items():
                figures[f"http_submit_{label}_{key}"] = value
            print(f"HTTP submit ({label}): {result}", flush=True)
        figures["asubmit_in_process_per_s"] = asyncio.run(
            _asubmit_rate(os.path.join(base, "inproc"), seconds, CLIENTS))
        print(f"in-process asubmit, {CLIENTS} callers: "
              f"{figures['asubmit_in_process_per_s']}/s", flush=True)
        figures["http_vs_asubmit"] = round(
            figures["http_submit_no_token_per_s"] / figures["asubmit_in_process_per_s"], 2)
        figures["http_submit_vs_healthz"] = round(
            figures["http_submit_no_token_per_s"] / figures["http_healthz_per_s"], 2)
        figures["token_vs_no_token"] = round(
            figures["http_submit_token_per_s"] / figures["http_submit_no_token_per_s"], 2)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    print(figures)
    write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
