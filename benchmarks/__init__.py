"""GopherQueue benchmarks: pytest-benchmark micro-benchmarks (test_*.py), the
whole suite (`python -m benchmarks [--quick|--full]`), its parts
(`python -m benchmarks.store_throughput`, `.drain`, `.restart`), and the HTTP
load test (`python -m benchmarks.loadtest`)."""
