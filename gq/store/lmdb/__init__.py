"""The embedded LMDB store: one environment in the data dir (see store.py)."""
