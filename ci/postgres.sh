#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL on loopback:
#
#     bash ci/postgres.sh bash ci/test.sh
#
# Installs the Debian postgresql package if its server binaries are missing,
# creates a cluster in a temp dir (owned by the `postgres` user when we are
# root: the server refuses to run as root), starts it on 127.0.0.1 on a free
# port with fsync and synchronous_commit on, exports GQ_TEST_POSTGRES (the URL
# the PostgreSQL tests use), runs the command, and stops the server and removes
# the cluster however the command ends. Exits with the command's status.
set -euo pipefail

server_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bin=$(server_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "ci/postgres.sh: installing the postgresql package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(server_bin)
fi

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

cluster=$(mktemp -d /tmp/gq-postgres.XXXXXX)
chmod 755 "$cluster"
[ "$(id -u)" -eq 0 ] && chown postgres: "$cluster"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
    as_owner "$bin/pg_ctl" -D "$cluster/data" -m immediate -w stop >/dev/null 2>&1 || true
    # the server's last children may still be writing: retry until it is all gone
    for _ in 1 2 3 4 5; do
        rm -rf "$cluster" 2>/dev/null && [ ! -e "$cluster" ] && break
        sleep 1
    done
}
trap stop EXIT

as_owner "$bin/initdb" -D "$cluster/data" -U gq --auth=trust -E UTF8 --no-instructions >/dev/null
as_owner "$bin/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$cluster \
        -c fsync=on -c synchronous_commit=on -c max_connections=300" >/dev/null \
    || { cat "$cluster/server.log" >&2; exit 1; }
as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U gq gq_test

export GQ_TEST_POSTGRES="postgresql://gq@127.0.0.1:$port/gq_test"
echo "ci/postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') at $GQ_TEST_POSTGRES" >&2
set +e
"$@"
status=$?
exit "$status"
