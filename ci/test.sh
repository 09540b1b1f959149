#!/usr/bin/env bash
# The README's second set-up command, with pytest's "no tests ran" (exit 5)
# counted as the failure it is.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e '.[test]' || exit 1
python -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "ci: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"
