"""What a Queue location is (a postgresql:// URL or an LMDB data dir), and how
logs and messages may show it. A leaf: every layer may import it."""

from __future__ import annotations


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
