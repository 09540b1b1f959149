"""The `gq` command line: a thin layer over gq.Queue.

Bad input exits non-zero with one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from gq.errors import GQError

EXIT_ERROR = 1
EXIT_USAGE = 2


def _open(args):
    import gq
    return gq.Queue(args.data)


def _print_json(value) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _parse_json(text: str, what: str):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise GQError(f"{what} is not valid JSON: {e}") from None


def cmd_submit(args) -> int:
    payload = None if args.payload is None else _parse_json(args.payload, "the payload")
    with _open(args) as q:
        jid = q.submit(args.type, payload, priority=args.priority, delay=args.delay,
                       depends_on=args.depends_on or None, key=args.key, id=args.id)
    print(jid)
    return 0


def cmd_inspect(args) -> int:
    with _open(args) as q:
        job = q.get(args.id).as_dict()
    if args.json:
        _print_json(job)
    else:
        for name, value in job.items():
            if isinstance(value, (dict, list)):
                value = orjson.dumps(value).decode()
            print(f"{name:>13}: {value}")
    return 0


def cmd_list(args) -> int:
    with _open(args) as q:
        jobs = [j.as_dict() for j in q.list(state=args.state, type=args.type, limit=args.limit)]
    if args.json:
        _print_json(jobs)
        return 0
    print(f"{'ID':<24} {'TYPE':<20} {'STATE':<12} {'PRIO':>6} {'ATT':>4}")
    for j in jobs:
        print(f"{j['id']:<24} {j['type']:<20} {j['state']:<12} {j['priority']:>6} "
              f"{j['attempts']:>4}")
    return 0


def cmd_stats(args) -> int:
    with _open(args) as q:
        stats = q.stats()
    if args.json:
        _print_json(stats)
        return 0
    print(f"total: {stats['total']}")
    for state, n in stats["by_state"].items():
        print(f"  {state:<12} {n}")
    for job_type, counts in stats["by_type"].items():
        print(f"{job_type}: " + ", ".join(f"{s}={n}" for s, n in counts.items()))
    if stats["paused"]:
        print("paused: " + ", ".join(stats["paused"]))
    return 0


def cmd_cancel(args) -> int:
    with _open(args) as q:
        print(f"{args.id}: {q.cancel(args.id).state.value}")
    return 0


def cmd_retry(args) -> int:
    with _open(args) as q:
        print(f"{args.id}: {q.retry(args.id).state.value}")
    return 0


def cmd_pause(args) -> int:
    with _open(args) as q:
        q.pause(args.type)
    print(f"paused {args.type}")
    return 0


def cmd_resume(args) -> int:
    with _open(args) as q:
        q.resume(args.type)
    print(f"resumed {args.type}")
    return 0


def load_queue(target: str):
    """Import `module:attribute` and return the Queue it names."""
    import importlib

    import gq

    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise GQError(f"worker target {target!r} must look like MODULE:QUEUE, "
                      "e.g. myapp.tasks:queue")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())   # like `python -m`: the current dir is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise GQError(f"cannot import module {module_name!r}: {e}") from None
    queue = getattr(module, attribute, None)
    if not isinstance(queue, gq.Queue):
        raise GQError(f"{module_name}:{attribute} is "
                      f"{'missing' if queue is None else type(queue).__name__}, "
                      "not a gq.Queue")
    return queue


def cmd_worker(args) -> int:
    import logging

    import gq
    from gq.logs import configure_logging

    configure_logging(args.log_format, args.log_level)
    queue = load_queue(args.target)
    named = "--data" in args.explicit
    if named and os.path.realpath(args.data) != os.path.realpath(queue.path):
        raise GQError(f"--data {args.data} names another data dir than {args.target}, "
                      f"which stores its jobs in {queue.path}; drop --data or point the "
                      "queue there")
    worker = gq.Worker(queue, concurrency=args.concurrency, processes=args.processes,
                       shutdown_timeout=args.shutdown_timeout, http=args.http,
                       http_token=args.token or None)
    logging.getLogger("gq.worker").info("serving %s from %s", args.target, queue.path)
    return worker.run()


def cmd_check(args) -> int:
    from gq.check import check_store

    with _open(args) as q:
        report = check_store(q.store)
    if args.json:
        _print_json({"ok": report.ok, "records": report.records,
                     "damaged": [{"id": i, "reason": r} for i, r in report.damaged],
                     "index_problems": report.index_problems})
    else:
        for job_id, reason in report.damaged:
            print(f"damaged: {job_id}: {reason}")
        for problem in report.index_problems:
            print(f"index: {problem}")
        print(f"checked {report.records} records: "
              + ("ok" if report.ok else f"{len(report.damaged)} damaged, "
                 f"{len(report.index_problems)} index problems"))
    return 0 if report.ok else 3


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '12h', '7d', '2w' -> seconds."""
    text = text.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise GQError(f"duration {text!r} is not a number of seconds or a number with "
                      "s, m, h, d or w (e.g. 7d)") from None
    if value < 0:
        raise GQError(f"duration {text!r} is negative")
    return value * _UNITS[unit]


def cmd_purge(args) -> int:
    age = parse_duration(args.older_than)
    with _open(args) as q:
        n = q.purge(older_than=age)
    if args.json:
        _print_json({"purged": n})
    else:
        print(f"purged {n} finished jobs older than {args.older_than}")
    return 0


def cmd_demo(args) -> int:
    from gq.demo import run_demo
    return run_demo(args.data if args.data_given else None, jobs=args.jobs)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default=os.environ.get("GQ_DATA", "./gq-data"),
                        help="data dir (default: $GQ_DATA or ./gq-data)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="gq", description="GopherQueue: a durable priority job queue in your process.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", parents=[common], help="run the demo on a fresh data dir",
                       description="Fill a fresh data dir with sample jobs (priorities, "
                       "delays, a dependency chain, failures), run them, print a summary.")
    p.add_argument("--jobs", type=int, default=300, help="number of sample jobs (default 300)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worker", parents=[common], help="run workers for a queue's handlers",
                       description="Run the handlers registered on MODULE:QUEUE until "
                       "SIGTERM/SIGINT, then drain gracefully (running jobs get "
                       "--shutdown-timeout seconds to finish).")
    p.add_argument("target", metavar="MODULE:QUEUE",
                   help="where the gq.Queue with its @queue.handler functions lives")
    p.add_argument("--concurrency", type=int, default=64,
                   help="jobs run at once per process (default 64)")
    p.add_argument("--processes", type=int, default=1,
                   help="worker processes sharing the data dir (default 1)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="seconds a graceful drain waits for running jobs (default 30)")
    p.add_argument("--http", metavar="HOST:PORT",
                   help="serve the HTTP API (/v1/...), /metrics, /healthz, /readyz and "
                   "the dashboard (/) here; a bare PORT binds 127.0.0.1. With "
                   "--processes N the supervisor serves it, metrics summed over the "
                   "processes")
    p.add_argument("--token", default=os.environ.get("GQ_TOKEN"),
                   help="bearer token required on /v1/* (default: $GQ_TOKEN; none: "
                   "open to whoever reaches the address)")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="log lines as text (default) or JSON objects")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING... (default INFO)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("submit", parents=[common], help="submit one job, print its id")
    p.add_argument("type", help="job type (the handler name)")
    p.add_argument("payload", nargs="?", help="JSON payload (default: null)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--delay", type=float, help="seconds to wait before it may run")
    p.add_argument("--depends-on", action="append", metavar="ID",
                   help="id of a job that must complete first (repeatable)")
    p.add_argument("--key", help="idempotency key")
    p.add_argument("--id", help="caller-chosen job id")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("inspect", parents=[common], help="show one job")
    p.add_argument("id")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("list", parents=[common], help="list jobs")
    p.add_argument("--state", help="pending, scheduled, running, completed, failed, "
                   "dead_letter or cancelled")
    p.add_argument("--type", help="only jobs of this type")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("stats", parents=[common], help="counts by state and type")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("check", parents=[common],
                       help="verify every record's checksum and every index",
                       description="Read every record (checksum verified) and compare the "
                       "indexes with them; print each damaged job id. Exit status 3 on "
                       "damage, 0 when clean. Read-only.")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("purge", parents=[common], help="delete finished jobs past an age",
                       description="Delete completed, failed and cancelled jobs that "
                       "finished longer ago than --older-than (dead_letter jobs are kept "
                       "for operators to retry).")
    p.add_argument("--older-than", required=True, metavar="DURATION",
                   help="e.g. 3600, 90m, 12h, 7d")
    p.set_defaults(func=cmd_purge)

    for name, func, text in (("cancel", cmd_cancel, "cancel a job"),
                             ("retry", cmd_retry, "retry a dead-lettered job")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("id")
        p.set_defaults(func=func)
    for name, func, text in (("pause", cmd_pause, "stop dispatching a job type"),
                             ("resume", cmd_resume, "restart dispatching a job type")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("type")
        p.set_defaults(func=func)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.explicit = {"--data"} if any(a == "--data" or a.startswith("--data=")
                                      for a in argv) else set()
    args.data_given = bool(args.explicit) or "GQ_DATA" in os.environ
    try:
        return args.func(args)
    except GQError as e:
        print(f"gq {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # `gq list | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
