"""Which store a Queue location names: a postgresql:// URL or an LMDB data dir."""

from __future__ import annotations

from gq.errors import DataDirError


def is_postgres(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def shown(location: str) -> str:
    """The location as logs may show it: a URL without its password."""
    if not is_postgres(location):
        return location
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(location)
    if parts.password is None:
        return location
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@",
                                                                 ":***@")))


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
    return registry.acquire(location, config.map_size,
                            circuit_threshold=config.circuit_threshold,
                            circuit_cooldown=config.circuit_cooldown)


def release(store) -> None:
    if is_postgres(store.path):
        from gq.store.postgres.store import registry as pg_registry
        pg_registry.release(store)
    else:
        from gq.store.lmdb.store import registry
        registry.release(store)
