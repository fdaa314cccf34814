#!/bin/sh
# Liveness of a worker whose pool answers remote control while busy (prefork, threads): a
# `celery inspect ping` addressed to this container's own worker node.
#
#   worker-ping.sh [TIMEOUT]       (default 10 seconds)
set -eu

cd "$(dirname "$0")/.."
# shellcheck source=docker/process-env.sh
. docker/process-env.sh
exec celery -A telemetry_project inspect ping --timeout "${1:-10}" --destination "$NODE"
