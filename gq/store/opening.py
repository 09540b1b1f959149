"""Which store a Queue location names: a postgresql:// URL or an LMDB data dir."""

from __future__ import annotations

from gq.errors import DataDirError
from gq.store.locations import is_postgres


def acquire(location: str, config):
    """The process's shared store for `location` (see each backend's registry)."""
    if is_postgres(location):
        try:
            from gq.store.postgres.store import registry as pg_registry
        except ImportError as e:
            raise DataDirError(f"{location.split('://')[0]}:// queues need psycopg 3 and "
                               f"psycopg_pool: pip install 'gopherqueue[postgres]' ({e})"
                               ) from None
        return pg_registry.acquire(location, circuit_threshold=config.circuit_threshold,
                                   circuit_cooldown=config.circuit_cooldown)
    from gq.store.lmdb.store import registry
    return registry.acquire(location, map_size=config.map_size,
                            circuit_threshold=config.circuit_threshold,
                            circuit_cooldown=config.circuit_cooldown)


def release(store) -> None:
    if is_postgres(store.path):
        from gq.store.postgres.store import registry as pg_registry
        pg_registry.release(store)
    else:
        from gq.store.lmdb.store import registry
        registry.release(store)
