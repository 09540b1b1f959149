"""A real lmdb.Environment wrapped so that a test can watch or fault its write
transactions (the circuit-breaker and durable-commit tests). Every call is
passed through to the real environment."""

from __future__ import annotations


class WrappedEnv:
    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def wrap_txn(self, txn):
        """The wrapper of a write transaction (subclasses say which)."""
        return txn

    def begin(self, write=False, **kw):
        txn = self._env.begin(write=write, **kw)
        return self.wrap_txn(txn) if write else txn

    def open_db(self, *args, txn=None, **kw):
        # LMDB wants the real transaction, not its wrapper (which keeps it as _txn)
        return self._env.open_db(*args, txn=getattr(txn, "_txn", txn), **kw)
