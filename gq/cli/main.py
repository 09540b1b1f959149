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
SHOW_TRACEBACK_ENV = "GQ_TRACEBACK"   # set to 1 to see the traceback of an unexpected error


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (the usage itself is
    one `--help` away), exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _open(args, create: bool = False):
    """The Queue of --data. Commands that only look or act on existing jobs
    refuse a missing data dir: a typo must not create an empty store and
    report "nothing there"."""
    import gq
    path = args.data
    if not path:
        raise GQError("the data dir is empty: pass --data DIR or set GQ_DATA")
    from gq.store.locations import is_postgres
    if not create and not is_postgres(path) and not os.path.isfile(path) and \
            not os.path.exists(os.path.join(path, "data.mdb")):
        what = "does not exist" if not os.path.exists(path) else "holds no gq store"
        raise GQError(f"data dir {path} {what}; pass --data DIR (or set GQ_DATA) to "
                      "the data dir your jobs were submitted to")
    return gq.Queue(path)


def _print_json(value) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _parse_json(text: str, what: str):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise GQError(f"{what} is not valid JSON: {e}") from None


def _read_payload(text: str | None):
    """JSON from the argument, from stdin (`-`) or from a file (`@path`): payloads
    too big for a command line still have a way in."""
    if text is None:
        return None
    what = "the payload"
    if text == "-":
        text, what = sys.stdin.read(), "the payload read from stdin"
    elif text.startswith("@"):
        path = text[1:]
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError as e:
            raise GQError(f"cannot read the payload file {path}: {e.strerror}") from None
        what = f"the payload in {path}"
    return _parse_json(text, what)


def cmd_submit(args) -> int:
    payload = _read_payload(args.payload)
    # --app: that queue's handlers check the payload (validate=) before it is stored
    queue = _app_queue(args, args.app, "--app") if args.app else _open(args, create=True)
    with queue as q:
        jid = q.submit(args.type, payload, priority=args.priority, delay=args.delay,
                       run_at=_parse_run_at(args.run_at), depends_on=args.depends_on or None,
                       key=args.key, id=args.id,
                       lifetime=None if args.lifetime is None else parse_duration(args.lifetime))
    if args.json:
        _print_json({"id": jid})
    else:
        print(jid)
    return 0


def _parse_run_at(text):
    """ISO 8601 with a timezone (2026-05-01T09:00:00Z) or epoch seconds."""
    if text is None:
        return None
    from datetime import datetime
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise GQError(f"--run-at {text!r} is not an ISO 8601 time (e.g. "
                      "2026-05-01T09:00:00Z) or epoch seconds") from None
    if when.tzinfo is None:
        raise GQError(f"--run-at {text!r} has no timezone; add Z or +HH:MM")
    return when


def _table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> None:
    """Print rows under headers, every column as wide as its widest cell."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    print(line(headers))
    for row in cells:
        print(line(row))


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def cmd_inspect(args) -> int:
    with _open(args) as q:
        job = q.get(args.id).as_dict()
        if job["state"] == "pending":   # what it waits on, and whether it can ever run
            job.update(q.waits(args.id))
    if args.json:
        _print_json(job)
        return 0
    error = job.pop("error")
    if not job["max_attempts"]:
        job["max_attempts"] = "- (the handler's or the queue's default)"
    for name, value in job.items():
        if isinstance(value, (dict, list)):
            value = orjson.dumps(value).decode()
        print(f"{name:>13}: {'-' if value is None else value}")
    if error:
        print(f"{'error':>13}: [{error['category']}] {error['message']} "
              f"(attempt {error['attempt']})")
        if error["traceback"]:
            print(error["traceback"].rstrip())
    return 0


def cmd_list(args) -> int:
    with _open(args) as q:
        jobs = q.list(state=args.state, type=args.type, limit=args.limit)
    if args.json:
        _print_json([j.as_dict() for j in jobs])
        return 0
    rows = []
    for j in jobs:
        error = j.error
        rows.append([j.id, j.type, j.state.value, j.priority, j.attempts,
                     f"[{error.category.value}] {_short(error.message)}" if error else ""])
    _table(["ID", "TYPE", "STATE", "PRIORITY", "ATTEMPTS", "LAST ERROR"], rows,
           right={3, 4})
    if len(jobs) == args.limit:
        print(f"(first {args.limit} shown; --limit N for more)")
    return 0


def cmd_stats(args) -> int:
    with _open(args) as q:
        stats = q.stats()
    if args.json:
        _print_json(stats)
        return 0
    states = list(stats["by_state"])
    rows = [[job_type] + [counts.get(s, 0) for s in states] + [sum(counts.values())]
            for job_type, counts in stats["by_type"].items()]
    rows.append(["(all types)"] + [stats["by_state"][s] for s in states] + [stats["total"]])
    _table(["TYPE"] + [s.upper() for s in states] + ["TOTAL"], rows,
           right=set(range(1, len(states) + 2)))
    if stats["paused"]:
        print("paused: " + ", ".join(stats["paused"]))
    return 0


def _print_job_state(args, job) -> None:
    if args.json:
        _print_json(job.as_dict())
    else:
        print(f"{job.id}: {job.state.value}")


def cmd_cancel(args) -> int:
    with _open(args) as q:
        _print_job_state(args, q.cancel(args.id))
    return 0


def cmd_retry(args) -> int:
    if args.dead_letter == (args.id is not None):
        raise GQError("give either a job ID or --dead-letter (all dead-lettered jobs, "
                      "optionally --type T), not both or neither")
    if args.type is not None and not args.dead_letter:
        raise GQError("--type goes with --dead-letter (retry every dead-lettered job "
                      "of that type)")
    with _open(args) as q:
        if not args.dead_letter:
            _print_job_state(args, q.retry(args.id))
            return 0
        retried = retry_dead_letters(q, args.type)
    if args.json:
        _print_json({"retried": retried})
    else:
        of = f" of type {args.type}" if args.type else ""
        print(f"retried {len(retried)} dead-lettered jobs{of}")
    return 0


def retry_dead_letters(q, job_type: str | None) -> list[str]:
    """Send every job that is dead-lettered now (of `job_type`, if given) back to
    scheduled. The ids are read first, so a job that dead-letters again while
    this runs is not retried twice; one a worker moved on meanwhile is skipped."""
    from gq.errors import InvalidTransition, JobNotFound

    ids = [j.id for j in q.list(state="dead_letter", type=job_type, limit=sys.maxsize)]
    retried = []
    for job_id in ids:
        try:
            q.retry(job_id)
        except (InvalidTransition, JobNotFound):
            continue
        retried.append(job_id)
    return retried


def cmd_pause(args) -> int:
    with _open(args) as q:
        q.pause(args.type)
    if args.json:
        _print_json({"type": args.type, "paused": True})
    else:
        print(f"paused {args.type}")
    return 0


def cmd_resume(args) -> int:
    with _open(args) as q:
        q.resume(args.type)
    if args.json:
        _print_json({"type": args.type, "paused": False})
    else:
        print(f"resumed {args.type}")
    return 0


def load_queue(target: str, what: str = "worker target"):
    """Import `module:attribute` and return the Queue it names."""
    import importlib

    import gq

    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise GQError(f"{what} {target!r} must look like MODULE:QUEUE, "
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


def _app_queue(args, target: str, what: str = "worker target"):
    """The Queue `target` names; a --data naming another store is an error."""
    queue = load_queue(target, what)
    if args.data_named and os.path.realpath(args.data) != os.path.realpath(queue.path):
        raise GQError(f"--data {args.data} names another data dir than {target}, "
                      f"which stores its jobs in {queue.path}; drop --data or point the "
                      "queue there")
    return queue


def cmd_worker(args) -> int:
    import logging

    import gq
    from gq.logs import configure_logging
    from gq.store import locations

    configure_logging(args.log_format, args.log_level)
    queue = _app_queue(args, args.target)
    worker = gq.Worker(queue, concurrency=args.concurrency, processes=args.processes,
                       shutdown_timeout=args.shutdown_timeout, http=args.http,
                       http_token=args.token or None)
    logging.getLogger("gq.worker").info("serving %s from %s", args.target,
                                        locations.shown(queue.path))
    return worker.run()


def cmd_check(args) -> int:
    with _open(args) as q:
        report = q.store.check()
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
    return run_demo(args.data if args.data_given else None, jobs=args.jobs,
                    as_json=args.json)


DATA_HELP = "data dir or postgresql:// URL (default: $GQ_DATA or ./gq-data)"
JSON_HELP = "print JSON instead of a table (for scripts)"


def build_parser() -> argparse.ArgumentParser:
    # --data and --json go before the command's name (`gq --data D stats`, as in
    # git and docker) or after it. After it they are SUPPRESSed when absent, so
    # the command's parser cannot overwrite a value given before it (main()
    # merges the two).
    data_opt = argparse.ArgumentParser(add_help=False)
    data_opt.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR",
                          help=DATA_HELP)
    common = argparse.ArgumentParser(add_help=False, parents=[data_opt])
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help=JSON_HELP)
    common.set_defaults(prints_data=True)     # the commands that take --json

    parser = _Parser(
        prog="gq", description="GopherQueue: a durable priority job queue in your process.",
        epilog="--data DIR (or GQ_DATA) and --json go before or after the command's "
        "name. `gq COMMAND --help` describes one command. Start with `gq demo`.")
    parser.add_argument("--data", dest="data_before", metavar="DIR", help=DATA_HELP)
    parser.add_argument("--json", dest="json_before", action="store_true",
                        help=JSON_HELP + ", for the commands that print data")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("demo", parents=[common], help="run the demo on a fresh data dir",
                       description="Fill a fresh data dir with sample jobs (priorities, "
                       "a delayed batch, a dependency chain, a temporary failure that "
                       "succeeds on retry, a permanent failure, a timeout), run them with "
                       "a progress bar, then print a summary and the commands to look "
                       "around. Without --data/GQ_DATA it uses a new temporary dir.")
    p.add_argument("--jobs", type=int, default=300,
                   help="number of plain sample jobs (default 300)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worker", parents=[data_opt], help="run workers for a queue's handlers",
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

    p = sub.add_parser("submit", parents=[common], help="submit one job, print its id",
                       description="Store one job durably and print its id.")
    p.add_argument("type", help="job type (the handler name)")
    p.add_argument("payload", nargs="?", metavar="JSON",
                   help="JSON payload (default: null); `-` reads it from stdin, "
                   "`@FILE` from a file")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--delay", type=float, metavar="SECONDS",
                   help="seconds to wait before it may run")
    p.add_argument("--run-at", metavar="TIME",
                   help="do not run before TIME: ISO 8601 with a timezone "
                   "(2026-05-01T09:00:00Z) or epoch seconds (wall clock)")
    p.add_argument("--lifetime", metavar="DURATION",
                   help="dead-letter the job if it has not finished DURATION after "
                   "submission (e.g. 600, 30m, 12h)")
    p.add_argument("--depends-on", action="append", metavar="ID",
                   help="id of a job that must complete first (repeatable)")
    p.add_argument("--key", help="idempotency key: while a job with this key is "
                   "unfinished, submitting it again prints that job's id and stores "
                   "nothing")
    p.add_argument("--id", help="caller-chosen job id (unique)")
    p.add_argument("--app", metavar="MODULE:QUEUE",
                   help="submit through this queue (as `gq worker` names it), so the "
                   "validate= of its handler for TYPE checks the payload first and a "
                   "bad one is refused; without it the worker checks before running")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("inspect", parents=[common], help="show one job",
                       description="Show one job: state, attempts, payload, result, "
                       "and its last error with the traceback of a system failure. For a "
                       "pending job also what it waits on (waiting_on) and whether it is "
                       "blocked (blocked_by: the chains from a dependency that ended "
                       "failed, dead_letter or cancelled).")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("list", parents=[common], help="list jobs",
                       description="List jobs with their state, priority, attempts and "
                       "last error, oldest first within each type.")
    p.add_argument("--state", help="pending, scheduled, running, completed, failed, "
                   "dead_letter or cancelled")
    p.add_argument("--type", help="only jobs of this type")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("stats", parents=[common], help="counts by state and type",
                       description="Count jobs by type and state, and list the paused "
                       "types.")
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

    p = sub.add_parser("cancel", parents=[common], help="cancel a job",
                       description="Cancel a pending, scheduled or running job (a running "
                       "handler is stopped by its worker).")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("retry", parents=[common], help="retry dead-lettered jobs",
                       description="Send a dead-lettered job back to scheduled with its "
                       "attempts reset, or with --dead-letter every dead-lettered job "
                       "(of --type T). A failed job is not retriable: fix its payload and "
                       "submit a new one.")
    p.add_argument("id", metavar="ID", nargs="?", help="the job to retry")
    p.add_argument("--dead-letter", action="store_true",
                   help="retry every job now in dead_letter")
    p.add_argument("--type", help="with --dead-letter: only jobs of this type")
    p.set_defaults(func=cmd_retry)

    for name, func, text in (
            ("pause", cmd_pause, "stop dispatching a job type (persisted; submissions "
             "are still accepted, running jobs finish)"),
            ("resume", cmd_resume, "restart dispatching a paused job type")):
        p = sub.add_parser(name, parents=[common], help=text.split(" (")[0],
                           description=text[0].upper() + text[1:] + ".")
        p.add_argument("type", metavar="TYPE")
        p.set_defaults(func=func)
    from gq.transfer import add_subcommands as add_transfer_commands
    add_transfer_commands(sub, common)     # gq export / gq import
    return parser


def _one_line(error: BaseException) -> str:
    """The error's message on one line (a driver's message may span several)."""
    return " ".join(str(error).split())


def _merge_global_options(parser, args) -> None:
    """One --data and one --json, wherever they were given: before the command's
    name, after it, or (the same value) both."""
    after = getattr(args, "data", None)
    if args.data_before is not None and after is not None and \
            os.path.realpath(args.data_before) != os.path.realpath(after):
        parser.error(f"--data is given twice with different values ({args.data_before} "
                     f"before {args.command}, {after} after it); give it once")
    given = after if after is not None else args.data_before
    args.data_named = given is not None     # on the command line, not from GQ_DATA
    args.data_given = args.data_named or "GQ_DATA" in os.environ
    args.data = given if given is not None else os.environ.get("GQ_DATA", "./gq-data")
    if args.json_before and not getattr(args, "prints_data", False):
        parser.error(f"--json does not apply to `gq {args.command}`, which prints no data")
    args.json = getattr(args, "json", False) or args.json_before


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return EXIT_USAGE
    args = parser.parse_args(argv)
    _merge_global_options(parser, args)
    try:
        return args.func(args)
    except GQError as e:
        print(f"gq {args.command}: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # `gq list | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except Exception as e:    # a bug or an environment problem: still one line
        if os.environ.get(SHOW_TRACEBACK_ENV):
            raise
        print(f"gq {args.command}: unexpected {type(e).__name__}: {_one_line(e)} "
              f"(set {SHOW_TRACEBACK_ENV}=1 to see the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
