#!/bin/sh
# Check the systemd unit: `systemd-analyze verify` must be clean and the offline security
# score must be 2.0 or lower (--threshold counts in tenths). Installs systemd's tools when the
# machine lacks them (CI runs as root on a Debian-based image).
set -eu
cd "$(dirname "$0")/.."
unit=systemd/symbold.service

if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
    else
        echo "check-unit: systemd-analyze is missing (install the systemd package)" >&2
        exit 1
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# verify insists that ExecStart= exists; point it at this checkout's entry point.
exe=$(command -v symbold || echo "$PWD/.venv/bin/symbold")
sed "s|^ExecStart=/opt/symbold/bin/symbold|ExecStart=$exe|" "$unit" > "$work/symbold.service"

systemd-analyze verify "$work/symbold.service"
systemd-analyze security --offline=yes --threshold=20 "$work/symbold.service" | tail -n 1
echo "check-unit: $unit passes verify and scores <= 2.0"
