"""GopherQueue benchmarks: pytest-benchmark micro-benchmarks (test_*.py) and
throughput scripts (`python -m benchmarks.store_throughput`)."""
