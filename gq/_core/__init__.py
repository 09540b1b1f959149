"""The compiled core of GopherQueue (Cython extensions; built by setup.py).

Four small modules, each a ``.pxd`` (declarations, cimportable) beside a ``.pyx``
(implementation) and a ``.pyi`` (stub for type checkers):

``states``
    The job lifecycle: the state numbers, the transition table (C data) and the
    checks that are the only gate for a state change.
``seq``
    ``SequenceCounter``: 64-bit sequence-number arithmetic and its 8-byte encoding
    (the store persists it in its meta table).
``codec``
    ``JobRecord`` (one job = one record) and its checksummed binary encoding;
    ``crc32c``.
``heap``
    ``ReadyHeap``: the in-memory mirror of ready jobs the dispatcher pops from,
    one binary heap per job type, priority first then FIFO.
``feed``
    ``push_ready_rows``: the store's ready-index rows parsed straight into a
    ReadyHeap (a worker starting on a big store reads them all).

Nothing here is public API: ``gq/__init__.py`` re-exports what users need.
"""
