#!/usr/bin/env bash
# The power-loss run (issue 15): CUTS power cuts under gq on the lazyfs FUSE
# simulator, spread over the variants drop, reorder, torn, eio and the
# sync-off negative control. Its last line is the summary:
#   power-loss: cuts=N acked=A lost=L corrupt=C duplicated=D control_lost=K eio_faults=E
# Usage: bash ci/powerloss.sh [CUTS]   (default 200; GQ_POWERLOSS_SEED fixes the seed)
set -euo pipefail
cd "$(dirname "$0")/.."
cuts="${1:-200}"
if ! [[ "$cuts" =~ ^[0-9]+$ ]] || [ "$cuts" -lt 1 ]; then
    echo "ci/powerloss.sh: CUTS must be a positive whole number of power cuts, got '$cuts'" >&2
    echo "usage: bash ci/powerloss.sh [CUTS]" >&2
    exit 2
fi
bash ci/fuse.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the gq of this checkout
if ! python -c "import gq._core.codec, mfusepy" 2>/dev/null; then
    # a clean clone: the compiled core and the FUSE binding come with the install
    echo "ci/powerloss.sh: installing gq with its test extra (pip install -e '.[test]')" >&2
    python -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi
work="$(mktemp -d -t gq-powerloss.XXXXXX)"
# Never leave a stale FUSE mount behind, however the run ends.
cleanup() {
    if mountpoint -q "$work/mnt" 2>/dev/null; then
        fusermount3 -u -q "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true
    fi
    if [ "${status:-1}" -eq 0 ]; then
        rm -rf "$work"
    else
        echo "ci/powerloss.sh: the data dirs and logs of the failed run are in $work" >&2
    fi
}
trap cleanup EXIT
seed=()
if [ -n "${GQ_POWERLOSS_SEED:-}" ]; then seed=(--seed "$GQ_POWERLOSS_SEED"); fi
start=$SECONDS
status=0
python tests/powerloss/runner.py "$cuts" --dir "$work" "${seed[@]}" > "$work/out" 2>&1 || status=$?
summary="$(grep '^power-loss: cuts=' "$work/out" | tail -1 || true)"
grep -v '^power-loss: cuts=' "$work/out" || true
echo "ci/powerloss.sh: $((SECONDS - start)) s" >&2
if [ "$status" -ne 0 ]; then
    echo "ci/powerloss.sh: FAILED (exit $status)" >&2
fi
if [ -z "$summary" ]; then
    echo "power-loss: no summary (the run failed before it finished)"
    exit 1
fi
echo "$summary"
exit "$status"
