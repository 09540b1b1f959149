#!/usr/bin/env bash
# Make sure `promtool` is present: tests/test_deploy.py validates the alert rules
# under deploy/prometheus with it (Debian ships it in the prometheus package).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci: promtool is missing and there is no apt-get to install it; the alert-rule" \
         "tests will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
command -v promtool >/dev/null
