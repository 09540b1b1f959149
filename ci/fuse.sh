#!/usr/bin/env bash
# Make sure FUSE works for the power-loss simulator (tests/powerloss): installs
# Debian's fuse3 (fusermount3) and libfuse3 if missing; the Python binding
# (mfusepy) comes with the `test` extra. /dev/fuse must exist (a container
# needs --device /dev/fuse --cap-add SYS_ADMIN).
set -euo pipefail
if ! command -v fusermount3 >/dev/null 2>&1 || [ -z "$(ldconfig -p | grep 'libfuse3\.so\.3')" ]; then
    echo "ci/fuse.sh: installing the fuse3 and libfuse3-3 packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends fuse3 libfuse3-3 >/dev/null
fi
if [ ! -e /dev/fuse ]; then
    echo "ci/fuse.sh: no /dev/fuse on this machine; the power-loss tests need FUSE" >&2
    exit 1
fi
