"""The `gq` command line: a thin layer over gq.Queue.

This module builds the parser, merges the global options and runs a command;
the commands live in the command modules (run, jobs, store, transfer), each
command as a `cmd_<name>(args) -> exit status` and an `add_<name>(sub, parents)`
that adds its parser. A new command: those two functions in a command module,
and its `add_` function in COMMANDS below.

Bad input exits non-zero with one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from gq.cli import jobs, run, store, transfer
from gq.cli.common import DATA_ENV, Parents, one_line
from gq.errors import GQError
from gq.queue import DEFAULT_DATA_DIR

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
SHOW_TRACEBACK_ENV = "GQ_TRACEBACK"   # set to 1 to see the traceback of an unexpected error

# Every command, in the order `gq --help` lists them.
COMMANDS = (
    run.add_demo, run.add_worker,
    jobs.add_submit, jobs.add_inspect, jobs.add_result, jobs.add_list,
    store.add_stats, store.add_check, store.add_purge,
    jobs.add_cancel, jobs.add_retry, jobs.add_pause, jobs.add_resume,
    transfer.add_export, transfer.add_import,
)

DATA_HELP = f"data dir or postgresql:// URL (default: ${DATA_ENV} or {DEFAULT_DATA_DIR})"
JSON_HELP = "print JSON instead of a table (for scripts)"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (the usage itself is
    one `--help` away), exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    # --data and --json go before the command's name (`gq --data D stats`, as in
    # git and docker) or after it. After it they are SUPPRESSed when absent, so
    # the command's parser cannot overwrite a value given before it (main()
    # merges the two).
    data_opt = argparse.ArgumentParser(add_help=False)
    data_opt.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR",
                          help=DATA_HELP)
    data_json = argparse.ArgumentParser(add_help=False, parents=[data_opt])
    data_json.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                           help=JSON_HELP)
    data_json.set_defaults(prints_data=True)     # the commands that take --json

    parser = Parser(
        prog="gq", description="GopherQueue: a durable priority job queue in your process.",
        epilog=f"--data DIR (or {DATA_ENV}) and --json go before or after the command's "
        "name. `gq COMMAND --help` describes one command. Start with `gq demo`.")
    parser.add_argument("--data", dest="data_before", metavar="DIR", help=DATA_HELP)
    parser.add_argument("--json", dest="json_before", action="store_true",
                        help=JSON_HELP + ", for the commands that print data")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    parents = Parents(data=data_opt, data_json=data_json)
    for add_command in COMMANDS:
        add_command(sub, parents)
    return parser


def merge_global_options(parser, args) -> None:
    """One --data and one --json, wherever they were given: before the command's
    name, after it, or (the same value) both."""
    after = getattr(args, "data", None)
    if args.data_before is not None and after is not None and \
            os.path.realpath(args.data_before) != os.path.realpath(after):
        parser.error(f"--data is given twice with different values ({args.data_before} "
                     f"before {args.command}, {after} after it); give it once")
    given = after if after is not None else args.data_before
    args.data_named = given is not None     # on the command line, not from GQ_DATA
    args.data_given = args.data_named or DATA_ENV in os.environ
    args.data = given if given is not None else os.environ.get(DATA_ENV, DEFAULT_DATA_DIR)
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
    merge_global_options(parser, args)
    try:
        return args.func(args)
    except GQError as e:
        print(f"gq {args.command}: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:   # `gq list | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except Exception as e:    # a bug or an environment problem: still one line
        if os.environ.get(SHOW_TRACEBACK_ENV):
            raise
        print(f"gq {args.command}: unexpected {type(e).__name__}: {one_line(e)} "
              f"(set {SHOW_TRACEBACK_ENV}=1 to see the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
