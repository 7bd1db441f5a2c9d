#!/bin/sh
# Install the system tools CI needs for the ops tests and may lack on a fresh Debian machine:
# systemd (the real-systemd integration test boots it in a private namespace; check-unit uses
# systemd-analyze) and promtool (Debian ships it in the `prometheus` package) for the alert
# rule tests. Idempotent: when every tool is already there it installs nothing and returns at
# once. Needs root and apt-get; elsewhere it says what is missing and leaves the tests to skip.
set -eu

missing=""
command -v systemctl >/dev/null 2>&1 && [ -x /lib/systemd/systemd ] || missing="$missing systemd"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v unshare >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 || missing="$missing util-linux"

if [ -z "$missing" ]; then
    echo "ci-deps: systemd, promtool, unshare and nsenter are present"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-deps: missing:$missing (needs root and apt-get to install; the tests that need them skip)" >&2
    exit 0
fi
echo "ci-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The prometheus package enables its own service; this machine does not run it (no systemd as
# PID 1), and the tests only need the promtool binary.
command -v promtool >/dev/null 2>&1 || { echo "ci-deps: promtool still missing" >&2; exit 1; }
echo "ci-deps: done"
