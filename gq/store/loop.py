"""Calling a store from an event loop.

Reads of a store whose reads are local and never wait
(`capabilities.local_reads`, LMDB's memory-mapped lock-free readers) are made
in place; anything else goes to a thread (PostgreSQL: the network), so no store
call holds the loop up. Writes have their own coroutine twins (`a`-prefixed).
"""

from __future__ import annotations

import asyncio


async def store_read(store, read, *args):
    """`read(*args)` from the event loop: in place where `store`'s reads are
    local, else on a thread. For reads on hot paths (a worker's dispatch, a
    result waiter's re-read), where a thread hop per wake-up costs latency."""
    if store.capabilities.local_reads:
        return read(*args)
    return await asyncio.to_thread(read, *args)
