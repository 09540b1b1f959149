#!/usr/bin/env bash
# Make sure a headless Chromium is there for the dashboard test
# (tests/http/test_dashboard.py): installs Debian's chromium package if missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -n "${GQ_CHROMIUM:-}" ]; then
    exit 0
fi
echo "ci/chromium.sh: installing the chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
