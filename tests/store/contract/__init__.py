"""The store contract suite, one module per operation group (see conftest.py).

A package, not a bare folder: tests/ imports by basename (rootdir sys.path
insertion), and test_check.py, test_purge.py, test_recovery.py,
test_scheduling.py and test_transfer.py also exist in tests/ itself.
"""
