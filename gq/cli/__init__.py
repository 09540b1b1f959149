"""The `gq` command line (its commands in main.py)."""

from gq.cli.main import main

__all__ = ["main"]
