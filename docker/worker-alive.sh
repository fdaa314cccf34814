#!/bin/sh
# Liveness of a solo-pool worker: its heartbeat file (ingest/heartbeat.py) must be younger than
# MAX_AGE seconds. The worker refreshes it from its event loop, which a running task blocks,
# so MAX_AGE must exceed the longest a stream tick or a chunk commit may take.
#
#   worker-alive.sh [MAX_AGE]      (default WORKER_HEARTBEAT_MAX_AGE, else 300)
set -eu

file="${WORKER_HEARTBEAT_FILE:-${TELEMETRY_RUN_DIR:-/tmp/telemetry}/worker-heartbeat}"
max_age="${1:-${WORKER_HEARTBEAT_MAX_AGE:-300}}"

if [ ! -f "$file" ]; then
  echo "no heartbeat at $file: the worker is not consuming (yet)"
  exit 1
fi
age=$(($(date +%s) - $(stat -c %Y "$file")))
if [ "$age" -gt "$max_age" ]; then
  echo "the worker's last heartbeat is ${age}s old (limit ${max_age}s)"
  exit 1
fi
echo "alive: heartbeat ${age}s ago"
