"""The `gq` command line: main.py builds the parser and runs a command; the
commands are in run.py, jobs.py, store.py and transfer.py (common.py: what they
share)."""

from gq.cli.main import main

__all__ = ["main"]
