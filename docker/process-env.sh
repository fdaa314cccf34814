#!/bin/sh
# Sourced by the probes (healthcheck.sh, worker-ping.sh) from the image's root: loads ROLE,
# POOL, NODE and PID, which docker/entrypoint.sh records when it starts a role, or exits 1.
process_env="${TELEMETRY_RUN_DIR:-/tmp/telemetry}/process.env"
if [ ! -f "$process_env" ]; then
  echo "starting: docker/entrypoint.sh has recorded no role here yet"
  exit 1
fi
# shellcheck source=/dev/null  # written by docker/entrypoint.sh at start
. "$process_env"
