"""The commands on jobs and job types: submit, inspect, result, list, cancel,
retry, pause and resume."""

from __future__ import annotations

import sys

import orjson

from gq.cli.common import (Parents, app_queue, open_queue, parse_duration, parse_run_at,
                           print_job_state, print_json, print_table, read_payload, shorten)
from gq.errors import GQError, InvalidTransition, JobFailed, JobNotFound

LIST_LIMIT_DEFAULT = 100
EXIT_ENDED_OTHERWISE = 1   # gq result: failed, dead_letter or cancelled
EXIT_TIMEOUT = 124         # gq result: not ended in time (as timeout(1) exits)


def cmd_submit(args) -> int:
    payload = read_payload(args.payload)
    # --app: that queue's handlers check the payload (validate=) before it is stored
    queue = app_queue(args, args.app, "--app") if args.app else open_queue(args, create=True)
    with queue as q:
        jid = q.submit(args.type, payload, priority=args.priority, delay=args.delay,
                       run_at=parse_run_at(args.run_at), depends_on=args.depends_on or None,
                       key=args.key, id=args.id,
                       lifetime=None if args.lifetime is None else parse_duration(args.lifetime))
    if args.json:
        print_json({"id": jid})
    else:
        print(jid)
    return 0


def cmd_inspect(args) -> int:
    with open_queue(args) as q:
        job = q.get(args.id).as_dict()
        if job["state"] == "pending":   # what it waits on, and whether it can ever run
            job.update(q.waits(args.id))
    if args.json:
        print_json(job)
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


def cmd_result(args) -> int:
    timeout = None if args.timeout is None else parse_duration(args.timeout)
    with open_queue(args) as q:
        try:
            value = q.result(args.id, timeout=timeout)
        except JobFailed as e:
            print(f"gq result: {e}", file=sys.stderr)
            return EXIT_ENDED_OTHERWISE
        except TimeoutError as e:
            print(f"gq result: {e}", file=sys.stderr)
            return EXIT_TIMEOUT
    print_json(value)
    return 0


def cmd_list(args) -> int:
    with open_queue(args) as q:
        jobs = q.list(state=args.state, type=args.type, limit=args.limit)
    if args.json:
        print_json([j.as_dict() for j in jobs])
        return 0
    rows = []
    for j in jobs:
        error = j.error
        rows.append([j.id, j.type, j.state.value, j.priority, j.attempts,
                     f"[{error.category.value}] {shorten(error.message)}" if error else ""])
    print_table(["ID", "TYPE", "STATE", "PRIORITY", "ATTEMPTS", "LAST ERROR"], rows,
                right={3, 4})
    if len(jobs) == args.limit:
        print(f"(first {args.limit} shown; --limit N for more)")
    return 0


def cmd_cancel(args) -> int:
    with open_queue(args) as q:
        print_job_state(args, q.cancel(args.id))
    return 0


def cmd_retry(args) -> int:
    if args.dead_letter == (args.id is not None):
        raise GQError("give either a job ID or --dead-letter (all dead-lettered jobs, "
                      "optionally --type T), not both or neither")
    if args.type is not None and not args.dead_letter:
        raise GQError("--type goes with --dead-letter (retry every dead-lettered job "
                      "of that type)")
    with open_queue(args) as q:
        if not args.dead_letter:
            print_job_state(args, q.retry(args.id))
            return 0
        retried = retry_dead_letters(q, args.type)
    if args.json:
        print_json({"retried": retried})
    else:
        of = f" of type {args.type}" if args.type else ""
        print(f"retried {len(retried)} dead-lettered jobs{of}")
    return 0


def retry_dead_letters(q, job_type: str | None) -> list[str]:
    """Send every job that is dead-lettered now (of `job_type`, if given) back to
    scheduled. The ids are read first, so a job that dead-letters again while
    this runs is not retried twice; one a worker moved on meanwhile is skipped."""
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
    """`gq pause TYPE` and `gq resume TYPE` (args.pause tells which)."""
    with open_queue(args) as q:
        if args.pause:
            q.pause(args.type)
        else:
            q.resume(args.type)
    if args.json:
        print_json({"type": args.type, "paused": args.pause})
    else:
        print(f"{'paused' if args.pause else 'resumed'} {args.type}")
    return 0


# -- the parsers ---------------------------------------------------------------------

def add_submit(sub, parents: Parents) -> None:
    p = sub.add_parser("submit", parents=[parents.data_json],
                       help="submit one job, print its id",
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


def add_inspect(sub, parents: Parents) -> None:
    p = sub.add_parser("inspect", parents=[parents.data_json], help="show one job",
                       description="Show one job: state, attempts, payload, result, "
                       "and its last error with the traceback of a system failure. For a "
                       "pending job also what it waits on (waiting_on) and whether it is "
                       "blocked (blocked_by: the chains from a dependency that ended "
                       "failed, dead_letter or cancelled).")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_inspect)


def add_result(sub, parents: Parents) -> None:
    p = sub.add_parser("result", parents=[parents.data],
                       help="wait for a job to end and print its result",
                       description="Wait until job ID ends, woken by the commit that ends "
                       "it, and print its result as JSON. Exit status: 0 completed, "
                       f"{EXIT_ENDED_OTHERWISE} ended failed, dead_letter or cancelled (its "
                       f"error on stderr), {EXIT_TIMEOUT} not ended within --timeout.")
    p.add_argument("id", metavar="ID")
    p.add_argument("--timeout", metavar="DURATION",
                   help="give up after this long: 30, 30s, 5m... (default: wait as long "
                   "as it takes)")
    p.set_defaults(func=cmd_result)


def add_list(sub, parents: Parents) -> None:
    p = sub.add_parser("list", parents=[parents.data_json], help="list jobs",
                       description="List jobs with their state, priority, attempts and "
                       "last error, oldest first within each type.")
    p.add_argument("--state", help="pending, scheduled, running, completed, failed, "
                   "dead_letter or cancelled")
    p.add_argument("--type", help="only jobs of this type")
    p.add_argument("--limit", type=int, default=LIST_LIMIT_DEFAULT,
                   help=f"at most this many (default {LIST_LIMIT_DEFAULT})")
    p.set_defaults(func=cmd_list)


def add_cancel(sub, parents: Parents) -> None:
    p = sub.add_parser("cancel", parents=[parents.data_json], help="cancel a job",
                       description="Cancel a pending, scheduled or running job (a running "
                       "handler is stopped by its worker).")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_cancel)


def add_retry(sub, parents: Parents) -> None:
    p = sub.add_parser("retry", parents=[parents.data_json], help="retry dead-lettered jobs",
                       description="Send a dead-lettered job back to scheduled with its "
                       "attempts reset, or with --dead-letter every dead-lettered job "
                       "(of --type T). A failed job is not retriable: fix its payload and "
                       "submit a new one.")
    p.add_argument("id", metavar="ID", nargs="?", help="the job to retry")
    p.add_argument("--dead-letter", action="store_true",
                   help="retry every job now in dead_letter")
    p.add_argument("--type", help="with --dead-letter: only jobs of this type")
    p.set_defaults(func=cmd_retry)


def _add_pause_or_resume(sub, parents: Parents, name: str, text: str, pause: bool) -> None:
    p = sub.add_parser(name, parents=[parents.data_json], help=text.split(" (")[0],
                       description=text[0].upper() + text[1:] + ".")
    p.add_argument("type", metavar="TYPE")
    p.set_defaults(func=cmd_pause, pause=pause)


def add_pause(sub, parents: Parents) -> None:
    _add_pause_or_resume(sub, parents, "pause", "stop dispatching a job type (persisted; "
                         "submissions are still accepted, running jobs finish)", pause=True)


def add_resume(sub, parents: Parents) -> None:
    _add_pause_or_resume(sub, parents, "resume", "restart dispatching a paused job type",
                         pause=False)
