"""What the command modules share: opening the queue of --data (or of an app),
printing JSON and tables, reading payloads, durations and times from text.

Bad input is a GQError with one line that names the problem; main() prints it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NamedTuple

import orjson

import gq
from gq.errors import GQError
from gq.store.locations import is_postgres
from gq.submission import parse_time

DATA_ENV = "GQ_DATA"
TOKEN_ENV = "GQ_TOKEN"


class Parents(NamedTuple):
    """The option parsers a command's parser inherits (argparse `parents=`)."""

    data: argparse.ArgumentParser        # --data
    data_json: argparse.ArgumentParser   # --data and --json: the commands that print data


def open_queue(args, create: bool = False) -> gq.Queue:
    """The Queue of --data. Commands that only look or act on existing jobs
    refuse a missing data dir: a typo must not create an empty store and
    report "nothing there"."""
    path = args.data
    if not path:
        raise GQError(f"the data dir is empty: pass --data DIR or set {DATA_ENV}")
    if not create and not is_postgres(path) and not os.path.isfile(path) and \
            not os.path.exists(os.path.join(path, "data.mdb")):
        what = "does not exist" if not os.path.exists(path) else "holds no gq store"
        raise GQError(f"data dir {path} {what}; pass --data DIR (or set {DATA_ENV}) to "
                      "the data dir your jobs were submitted to")
    return gq.Queue(path)


def load_queue(target: str, what: str = "worker target") -> gq.Queue:
    """Import `module:attribute` and return the Queue it names."""
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


def app_queue(args, target: str, what: str = "worker target") -> gq.Queue:
    """The Queue `target` names; a --data naming another store is an error."""
    queue = load_queue(target, what)
    if args.data_named and os.path.realpath(args.data) != os.path.realpath(queue.path):
        raise GQError(f"--data {args.data} names another data dir than {target}, "
                      f"which stores its jobs in {queue.path}; drop --data or point the "
                      "queue there")
    return queue


# -- output --------------------------------------------------------------------------

def print_json(value) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_job_state(args, job) -> None:
    """A job after a command changed it: all of it with --json, else `ID: STATE`."""
    if args.json:
        print_json(job.as_dict())
    else:
        print(f"{job.id}: {job.state.value}")


def print_table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> None:
    """Print rows under headers, every column as wide as its widest cell."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    print(line(headers))
    for row in cells:
        print(line(row))


def shorten(text: str, width: int = 60) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def one_line(error: BaseException) -> str:
    """The error's message on one line (a driver's message may span several)."""
    return " ".join(str(error).split())


# -- input ---------------------------------------------------------------------------

def parse_json(text: str | bytes, what: str):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise GQError(f"{what} is not valid JSON: {e}") from None


def read_payload(text: str | None):
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
    return parse_json(text, what)


def parse_run_at(text: str | None) -> float | None:
    """--run-at: ISO 8601 with a timezone (2026-05-01T09:00:00Z) or epoch seconds,
    the rules of gq.submission.parse_time (which POST /v1/jobs uses too)."""
    return None if text is None else parse_time(text, "--run-at")


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
