#!/bin/sh
# Liveness of a worker whose pool answers remote control while busy (prefork, threads): a
# `celery inspect ping` addressed to this container's own worker node.
#
#   worker-ping.sh [TIMEOUT]       (default 10 seconds)
set -eu

cd "$(dirname "$0")/.."
run_dir="${TELEMETRY_RUN_DIR:-/tmp/telemetry}"
if [ ! -f "$run_dir/process.env" ]; then
  echo "no worker started by docker/entrypoint.sh here"
  exit 1
fi
# shellcheck source=/dev/null  # written by docker/entrypoint.sh at start
. "$run_dir/process.env"
exec celery -A telemetry_project inspect ping --timeout "${1:-10}" --destination "$NODE"
