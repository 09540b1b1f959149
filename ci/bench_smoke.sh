#!/usr/bin/env bash
# The benchmark suite at --quick sizes, as a smoke test: it fails when a
# benchmark errors, never on a timing (nothing here compares figures). The
# JSON is kept under artifacts/ for whoever wants to look at the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p artifacts
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# timeout: a hung benchmark fails the step instead of eating CI's budget
timeout 300 python -m benchmarks --quick --dir "$scratch" --json artifacts/bench-quick.json
python - <<'PY'
import json, math
report = json.load(open("artifacts/bench-quick.json"))
bad = [k for k, v in report["figures"].items()
       if isinstance(v, float) and not math.isfinite(v)]
if bad:
    raise SystemExit(f"bench smoke: figures missing (NaN): {', '.join(bad)}")
print(f"bench smoke: {len(report['figures'])} figures in artifacts/bench-quick.json")
PY
