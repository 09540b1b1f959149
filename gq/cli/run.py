"""The commands that run jobs: `gq worker` and `gq demo`."""

from __future__ import annotations

import logging
import os

import gq
from gq.cli.common import TOKEN_ENV, Parents, app_queue
from gq.config import CONCURRENCY_DEFAULT, PROCESSES_DEFAULT, SHUTDOWN_TIMEOUT_DEFAULT
from gq.demo import run_demo
from gq.logs import configure_logging
from gq.store import locations

DEMO_JOBS_DEFAULT = 300


def cmd_worker(args) -> int:
    configure_logging(args.log_format, args.log_level)
    queue = app_queue(args, args.target)
    # gq.Worker imports the runtime on first use: the other commands never load it
    worker = gq.Worker(queue, concurrency=args.concurrency, processes=args.processes,
                       shutdown_timeout=args.shutdown_timeout, http=args.http,
                       http_token=args.token or None, types=_types(args.types))
    logging.getLogger("gq.worker").info("serving %s from %s", args.target,
                                        locations.shown(queue.path))
    return worker.run()


def _types(given: list[str] | None) -> list[str] | None:
    """--types 'email.*,sms.*' --types report -> ['email.*', 'sms.*', 'report']."""
    if given is None:
        return None
    return [t.strip() for value in given for t in value.split(",")]


def cmd_demo(args) -> int:
    return run_demo(args.data if args.data_given else None, jobs=args.jobs,
                    as_json=args.json)


def _seconds(value: float) -> str:
    """30.0 -> '30' (as the help texts show a default)."""
    return f"{value:g}"


def add_demo(sub, parents: Parents) -> None:
    p = sub.add_parser("demo", parents=[parents.data_json],
                       help="run the demo on a fresh data dir",
                       description="Fill a fresh data dir with sample jobs (priorities, "
                       "a delayed batch, a dependency chain, a temporary failure that "
                       "succeeds on retry, a permanent failure, a timeout), run them with "
                       "a progress bar, then print a summary and the commands to look "
                       "around. Without --data/GQ_DATA it uses a new temporary dir.")
    p.add_argument("--jobs", type=int, default=DEMO_JOBS_DEFAULT,
                   help=f"number of plain sample jobs (default {DEMO_JOBS_DEFAULT})")
    p.set_defaults(func=cmd_demo)


def add_worker(sub, parents: Parents) -> None:
    p = sub.add_parser("worker", parents=[parents.data],
                       help="run workers for a queue's handlers",
                       description="Run the handlers registered on MODULE:QUEUE until "
                       "SIGTERM/SIGINT, then drain gracefully (running jobs get "
                       "--shutdown-timeout seconds to finish).")
    p.add_argument("target", metavar="MODULE:QUEUE",
                   help="where the gq.Queue with its @queue.handler functions lives")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY_DEFAULT,
                   help=f"jobs run at once per process (default {CONCURRENCY_DEFAULT})")
    p.add_argument("--processes", type=int, default=PROCESSES_DEFAULT,
                   help=f"worker processes sharing the data dir (default {PROCESSES_DEFAULT})")
    p.add_argument("--shutdown-timeout", type=float, default=SHUTDOWN_TIMEOUT_DEFAULT,
                   help="seconds a graceful drain waits for running jobs (default "
                   f"{_seconds(SHUTDOWN_TIMEOUT_DEFAULT)})")
    p.add_argument("--types", action="append", metavar="PATTERNS",
                   help="serve only these job types: names or glob patterns, comma-"
                   "separated or repeated ('email.*,sms.send'); jobs of other types wait "
                   "for the workers that serve them (default: every handler)")
    p.add_argument("--http", metavar="HOST:PORT",
                   help="serve the HTTP API (/v1/...), /metrics, /healthz, /readyz and "
                   "the dashboard (/) here; a bare PORT binds 127.0.0.1. With "
                   "--processes N the supervisor serves it, metrics summed over the "
                   "processes")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"bearer token required on /v1/* (default: ${TOKEN_ENV}; none: "
                   "open to whoever reaches the address)")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="log lines as text (default) or JSON objects")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING... (default INFO)")
    p.set_defaults(func=cmd_worker)
