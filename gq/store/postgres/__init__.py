"""The PostgreSQL store, for queues shared by workers on many machines (see store.py)."""
