"""`gq export` / `gq import`: the commands over gq.transfer's export format."""

from __future__ import annotations

import sys

import gq
from gq.cli.common import Parents, open_queue
from gq.errors import GQError
from gq.store.locations import shown
from gq.transfer import export_jobs, import_jobs


def cmd_export(args) -> int:
    with open_queue(args) as q:     # refuses a data dir that holds no store (a typo)
        if args.output in (None, "-"):
            n = export_jobs(q.store, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            with open(args.output, "wb") as f:
                n = export_jobs(q.store, f)
    print(f"exported {n} jobs", file=sys.stderr)
    return 0


def cmd_import(args) -> int:
    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as e:
        raise GQError(f"cannot read {args.file}: {e.strerror}") from None
    with source, gq.Queue(args.data) as q:      # a new store is what an import is for
        n = import_jobs(q.store, source)
    print(f"imported {n} jobs into {shown(args.data)}")
    return 0


def add_export(sub, parents: Parents) -> None:
    p = sub.add_parser(
        "export", parents=[parents.data_json], help="write unfinished jobs as JSON lines",
        description="Write every unfinished job (pending, scheduled, running, "
        "dead_letter) with its state, attempts and dependencies, and the finished jobs "
        "they depend on, as JSON lines, for `gq import` into another store (LMDB or "
        "PostgreSQL). Stop the workers first.")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    p.set_defaults(func=cmd_export)


def add_import(sub, parents: Parents) -> None:
    p = sub.add_parser(
        "import", parents=[parents.data_json], help="store the jobs of a `gq export`",
        description="Store every job of a `gq export` file in --data (a data dir or a "
        "postgresql:// URL), all in one transaction or none; jobs that were running are "
        "scheduled to run again.")
    p.add_argument("file", help="the export file, or - for stdin")
    p.set_defaults(func=cmd_import)
