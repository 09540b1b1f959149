"""HTTP load test of `gq worker --http`: submits at a target rate for a duration.

    # against a worker you started (loopback only):
    gq worker benchmarks.apps:queue --http 127.0.0.1:8080 &
    python -m benchmarks.loadtest --url http://127.0.0.1:8080 --rate 5000 --duration 60

    # the load test starts the worker itself, SIGKILLs and restarts it every 10 s,
    # then checks that every acknowledged (201) job is in the store:
    python -m benchmarks.loadtest --spawn benchmarks.apps:queue --data ./lt-data \\
        --rate 2000 --duration 60 --kill-every 10

Open loop: request i is due at start + i/rate whatever happened to the earlier
ones, and its latency is measured from that intended time, so a stalled server
shows up as latency instead of silently lowering the offered rate
(coordinated omission). `--clients` connections carry the requests; when all
are busy, due requests wait for one and that wait counts. Both the rate and the
duration are bounded and the run stops by itself; targets are loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections import Counter

import orjson

from benchmarks.baselines import write_json

MAX_DURATION = 600.0          # seconds: a load test here always ends by itself
MAX_RATE = 100_000.0          # requests per second
DRAIN_TIMEOUT = 30.0          # how long in-flight requests may take after the end
HISTOGRAM_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
HERE = os.path.dirname(os.path.abspath(__file__))
now = time.monotonic       # not loop.time(): uvloop's clock has 1 ms resolution


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadtest",
                                description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080",
                   help="the worker's HTTP address (loopback only; default %(default)s)")
    p.add_argument("--rate", type=float, default=1000.0, help="submits per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    p.add_argument("--clients", type=int, default=64, help="concurrent connections")
    p.add_argument("--type", default="bench.noop", help="job type to submit")
    p.add_argument("--token", default=os.environ.get("GQ_TOKEN"),
                   help="bearer token (default: $GQ_TOKEN)")
    p.add_argument("--spawn", metavar="MODULE:QUEUE",
                   help="start `gq worker MODULE:QUEUE --http` at --url ourselves "
                        "(and stop it at the end); needs --data")
    p.add_argument("--data", help="the worker's data dir: with it, every acknowledged id "
                                  "is looked up in the store at the end")
    p.add_argument("--kill-every", type=float, metavar="SECONDS",
                   help="SIGKILL and restart the spawned worker this often (needs --spawn)")
    p.add_argument("--json", help="write the figures here as JSON")
    args = p.parse_args(argv)
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname or not url.port:
        p.error(f"--url {args.url!r}: expected http://HOST:PORT")
    if not _loopback(url.hostname):
        p.error(f"--url {args.url!r}: only loopback addresses (127.0.0.0/8, ::1, "
                "localhost) may be load-tested")
    if not 0 < args.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION:g}] seconds")
    if not 0 < args.rate <= MAX_RATE:
        p.error(f"--rate must be in (0, {MAX_RATE:g}] per second")
    if args.clients < 1:
        p.error("--clients must be at least 1")
    if args.kill_every is not None and (not args.spawn or args.kill_every <= 0):
        p.error("--kill-every needs --spawn (the load test must own the worker) and a "
                "positive number of seconds")
    if args.spawn and not args.data:
        p.error("--spawn needs --data (the spawned worker's data dir)")
    args.host, args.port = url.hostname, url.port
    return args


class SpawnedWorker:
    """`gq worker MODULE:QUEUE --http HOST:PORT` as a child we can kill and restart."""

    def __init__(self, target: str, host: str, port: int, data: str, token: str | None):
        self.cmd = [sys.executable, "-m", "gq.cli", "worker", target,
                    "--http", f"{host}:{port}", "--log-level", "WARNING"]
        self.env = {**os.environ, "GQ_DATA": data,
                    "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(HERE),
                                                                os.environ.get("PYTHONPATH")]))}
        if token:
            self.env["GQ_TOKEN"] = token
        self.addr = (host, port)
        self.log_path = os.path.abspath(data).rstrip(os.sep) + ".worker.log"
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:    # recovery logs a line per reclaimed job
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:     # wait until it accepts connections
            try:
                socket.create_connection(self.addr, timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the worker exited with {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not start listening in time")
                time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


class Results:
    def __init__(self):
        self.latencies: list[float] = []     # seconds from intended send to the answer
        self.by_status: Counter = Counter()  # 201, 429, ..., or an exception's name
        self.acked: list[str] = []           # ids answered with 201
        self.sent = 0
        self.unsent = 0                      # due before the end, never sent (all busy)


async def _client(session, url, body, headers, start, rate, end, counter, res: Results):
    while True:
        i = counter[0]
        counter[0] += 1
        intended = start + i / rate
        if intended >= end:
            return
        if now() >= end:        # the duration is over: what is still due is
            res.unsent += 1           # counted as never sent, not sent late
            continue
        delay = intended - now()
        if delay > 0:
            await asyncio.sleep(delay)
        res.sent += 1
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                payload = await resp.read()
                status = resp.status
        except Exception as e:      # connection refused/reset while the worker is down
            res.by_status[type(e).__name__] += 1
            res.latencies.append(now() - intended)
            continue
        res.latencies.append(now() - intended)
        res.by_status[status] += 1
        if status == 201:
            res.acked.append(orjson.loads(payload)["id"])


async def _progress(res: Results, start: float, duration: float):
    """One status line, rewritten each second (a new line every 5 s when
    stderr is not a terminal, so CI logs stay short)."""
    tty = sys.stderr.isatty()
    ticks = 0
    while True:
        await asyncio.sleep(1.0)
        ticks += 1
        if not tty and ticks % 5:
            continue
        elapsed = now() - start
        ok = res.by_status.get(201, 0)
        answered = sum(res.by_status.values())
        recent = sorted(res.latencies[-2000:])
        p99 = recent[int(0.99 * (len(recent) - 1))] * 1000 if recent else float("nan")
        lead = "\r" if tty else ""
        print(f"{lead}{min(elapsed, duration):5.1f}/{duration:g}s  sent "
              f"{res.sent:,}  201 {ok:,}  errors {answered - ok:,}  in flight "
              f"{res.sent - answered:,}  {ok / max(elapsed, 1e-9):,.0f}/s  p99(recent) "
              f"{p99:.1f} ms   ", end="" if tty else "\n", file=sys.stderr, flush=True)


async def _killer(worker: SpawnedWorker, every: float, end: float):
    loop = asyncio.get_running_loop()
    while now() + every < end:
        await asyncio.sleep(every)
        await loop.run_in_executor(None, worker.kill)
        await loop.run_in_executor(None, worker.start)


async def drive(args, worker: SpawnedWorker | None) -> tuple[Results, float]:
    import aiohttp

    res = Results()
    url = f"http://{args.host}:{args.port}/v1/jobs"
    body = orjson.dumps({"type": args.type, "payload": {"n": 1}})
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=DRAIN_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = now() + 0.2
        end = start + args.duration
        counter = [0]
        progress = loop.create_task(_progress(res, start, args.duration))
        killer = (loop.create_task(_killer(worker, args.kill_every, end))
                  if args.kill_every else None)
        clients = [_client(session, url, body, headers, start, args.rate, end, counter, res)
                   for _ in range(args.clients)]
        try:
            # a request still unanswered DRAIN_TIMEOUT after the end fails on its own
            # (the session's timeout); this is the backstop
            await asyncio.wait_for(asyncio.gather(*clients),
                                   args.duration + DRAIN_TIMEOUT + 5)
        except asyncio.TimeoutError:
            print("\nloadtest: requests still unanswered at the deadline were abandoned",
                  file=sys.stderr)
        finally:
            progress.cancel()
            if killer is not None:
                killer.cancel()
        elapsed = now() - start
    print(file=sys.stderr)
    return res, elapsed


def verify(data: str, ids: list[str]) -> list[str]:
    """The acknowledged ids missing from the store (should be none)."""
    import gq

    q = gq.Queue(data)
    try:
        missing = []
        for job_id in ids:
            try:
                q.get(job_id)
            except gq.JobNotFound:
                missing.append(job_id)
        return missing
    finally:
        q.close()


def report(args, res: Results, elapsed: float, kills: int, missing) -> dict:
    ms = sorted(x * 1000 for x in res.latencies)

    def pct(q):
        return ms[min(len(ms) - 1, int(q * len(ms)))] if ms else float("nan")

    ok = res.by_status.get(201, 0)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    figures = {"target_rate_per_s": args.rate, "duration_s": args.duration,
               "clients": args.clients, "sent": res.sent, "acknowledged": ok,
               "achieved_rate_per_s": round(ok / elapsed, 1),
               "errors": res.sent - ok, "due_but_unsent": res.unsent,
               "by_status": {str(k): v for k, v in sorted(res.by_status.items(), key=str)},
               "p50_ms": round(pct(0.50), 2), "p99_ms": round(pct(0.99), 2),
               "p999_ms": round(pct(0.999), 2), "max_ms": round(ms[-1], 2) if ms else None,
               "worker_kills": kills,
               "client_cpu_s": round(cpu.ru_utime + cpu.ru_stime, 2)}
    print(f"offered {args.rate:,.0f}/s for {args.duration:g}s over {args.clients} "
          f"connections: {res.sent:,} sent, {ok:,} acknowledged "
          f"({figures['achieved_rate_per_s']:,.0f}/s), {figures['errors']:,} errors; the "
          f"load test itself used {figures['client_cpu_s']} CPU-seconds")
    if res.unsent:
        print(f"  {res.unsent:,} requests fell due but were never sent: all {args.clients} "
              "connections were busy until the end (the server did not keep up)")
    for status, n in figures["by_status"].items():
        print(f"  {status:<24} {n:>9,}")
    print(f"latency from intended send: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} "
          f"ms, p999 {figures['p999_ms']} ms, max {figures['max_ms']} ms")
    edges = [0, *HISTOGRAM_MS, float("inf")]
    counts = Counter()
    j = 0
    for x in ms:
        while x > edges[j + 1]:
            j += 1
        counts[j] += 1
    for i in range(len(edges) - 1):
        if counts[i]:
            label = (f"<= {edges[i + 1]:g} ms" if edges[i + 1] != float("inf")
                     else f"> {edges[i]:g} ms")
            share = counts[i] / len(ms)
            print(f"  {label:>12} {counts[i]:>9,} {share:7.2%} {'#' * round(share * 50)}")
    if missing is not None:
        figures["acknowledged_missing"] = len(missing)
        if missing:
            print(f"LOST: {len(missing)} acknowledged jobs are not in the store, e.g. "
                  f"{missing[:5]}")
        else:
            print(f"every one of the {ok:,} acknowledged jobs is in the store"
                  + (f" after {kills} SIGKILLs of the worker" if kills else ""))
    return figures


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import aiohttp  # noqa: F401  (the server's own dependency)
    except ImportError:
        print("loadtest: needs aiohttp (installed with gq's HTTP support)", file=sys.stderr)
        return 2
    worker = None
    if args.spawn:
        worker = SpawnedWorker(args.spawn, args.host, args.port, args.data, args.token)
        worker.start()
    try:
        try:
            import uvloop
            res, elapsed = uvloop.run(drive(args, worker))
        except ImportError:  # pragma: no cover
            res, elapsed = asyncio.run(drive(args, worker))
    finally:
        if worker is not None:
            worker.stop()
    missing = verify(args.data, res.acked) if args.data else None
    figures = report(args, res, elapsed, worker.kills if worker else 0, missing)
    if worker is not None:
        print(f"the worker's log: {worker.log_path}")
    write_json(args.json, figures)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
