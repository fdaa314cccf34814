#!/bin/sh
# The one entry point of the image: every role starts here, in Docker Compose, in the Helm
# chart and in the tests (tests/test_deploy_compose.py runs this same script against the test
# database), so the command a container runs is the command that was tested.
#
#   entrypoint.sh web | beat | streamer [celery worker options] | collector [...]
#   entrypoint.sh migrate | collectstatic | check | add-source NAME LOCATION [...]
#   entrypoint.sh manage COMMAND [...] | celery [...] | any other command (run as is)
#
# Environment (besides what telemetry_project/settings.py reads):
#   PORT, WEB_HOST, WEB_CONCURRENCY, WEB_TIMEOUT   gunicorn (8000, 0.0.0.0, 2, 60)
#   WORKER_POOL, WORKER_CONCURRENCY                worker pool (solo) and its size
#   WORKER_HEARTBEAT_FILE                          solo workers' liveness file (docker/worker-alive.sh)
#   WAIT_FOR_MIGRATIONS=1                          long-running roles wait until the schema is current
#   WAIT_FOR_MIGRATIONS_TIMEOUT                    ... for at most this many seconds (600)
#   TELEMETRY_RUN_DIR                              scratch files of the process (/tmp/telemetry)
#   ENTRYPOINT_DRY_RUN=1                           print the final command, one argument a line
set -eu

cd "$(dirname "$0")/.."
RUN_DIR="${TELEMETRY_RUN_DIR:-/tmp/telemetry}"
LOG_LEVEL="${LOG_LEVEL:-INFO}"

usage() {
  echo "usage: entrypoint.sh web|beat|streamer|collector|migrate|collectstatic|check|add-source|manage|celery [ARG...]" >&2
  exit 64
}

# Replace this shell with the command (its PID stays, so signals reach it directly).
run() {
  if [ -n "${ENTRYPOINT_DRY_RUN:-}" ]; then
    printf '%s\n' "$@"
    exit 0
  fi
  exec "$@"
}

# Remember what this container runs, for docker/healthcheck.sh and the probes.
record() {
  [ -n "${ENTRYPOINT_DRY_RUN:-}" ] && return 0
  mkdir -p "$RUN_DIR"
  printf 'ROLE=%s\nPOOL=%s\nNODE=%s\nPID=%s\n' "$1" "$2" "$3" "$$" >"$RUN_DIR/process.env"
}

# Long-running roles started beside a migration (Helm hook) wait for the schema to be current.
wait_for_migrations() {
  if [ "${WAIT_FOR_MIGRATIONS:-0}" != "1" ] || [ -n "${ENTRYPOINT_DRY_RUN:-}" ]; then
    return 0
  fi
  deadline=$(($(date +%s) + ${WAIT_FOR_MIGRATIONS_TIMEOUT:-600}))
  until python manage.py migrate --check >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "entrypoint: migrations still missing (or the database unreachable) after ${WAIT_FOR_MIGRATIONS_TIMEOUT:-600}s" >&2
      python manage.py migrate --check || true
      exit 1
    fi
    echo "entrypoint: waiting for the database schema to be migrated"
    sleep 5
  done
}

# A Celery worker on its queue. Options given after the role win over these defaults.
worker() {
  role="$1"
  default_queue="$2"
  shift 2
  queues=""
  pool=""
  node=""
  previous=""
  for arg in "$@"; do
    case "$previous" in
      -Q | --queues) queues="$arg" ;;
      -P | --pool) pool="$arg" ;;
      -n | --hostname) node="$arg" ;;
    esac
    case "$arg" in
      --queues=*) queues="${arg#*=}" ;;
      --pool=*) pool="${arg#*=}" ;;
      --hostname=*) node="${arg#*=}" ;;
      -Q?*) queues="${arg#-Q}" ;;
      -P?*) pool="${arg#-P}" ;;
      -n?*) node="${arg#-n}" ;;
    esac
    previous="$arg"
  done
  if [ -z "$queues" ]; then
    queues="$default_queue"
    set -- -Q "$queues" "$@"
  fi
  if [ -z "$node" ]; then
    node="$role@%h"
    set -- -n "$node" "$@"
  fi
  if [ -z "$pool" ]; then
    pool="${WORKER_POOL:-solo}"
    set -- --pool "$pool" "$@"
  fi
  if [ -n "${WORKER_CONCURRENCY:-}" ] && [ "$pool" != "solo" ]; then
    set -- --concurrency "$WORKER_CONCURRENCY" "$@"
  fi
  if [ "$pool" = "solo" ]; then
    # The liveness signal of a pool that cannot answer pings while busy (ingest/heartbeat.py).
    export WORKER_HEARTBEAT_FILE="${WORKER_HEARTBEAT_FILE:-$RUN_DIR/worker-heartbeat}"
    [ -n "${ENTRYPOINT_DRY_RUN:-}" ] || rm -f "$WORKER_HEARTBEAT_FILE"
  fi
  wait_for_migrations
  record "$role" "$pool" "$(printf '%s' "$node" | sed "s/%h/$(uname -n)/")"
  # Mingle and gossip cost every worker a round trip to every other one; nothing here uses them.
  run celery -A telemetry_project worker --loglevel "$LOG_LEVEL" \
    --without-mingle --without-gossip --without-heartbeat --include ingest.heartbeat "$@"
}

[ $# -ge 1 ] || usage
role="$1"
shift

case "$role" in
  web)
    wait_for_migrations
    record web - -
    run gunicorn telemetry_project.wsgi:application \
      --bind "${WEB_HOST:-0.0.0.0}:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-2}" \
      --timeout "${WEB_TIMEOUT:-60}" \
      --graceful-timeout 30 \
      --worker-tmp-dir /dev/shm \
      --access-logfile - \
      "$@"
    ;;
  beat)
    wait_for_migrations
    record beat - -
    # The scheduler is django_celery_beat's DatabaseScheduler (settings): nothing on disk.
    run celery -A telemetry_project beat --loglevel "$LOG_LEVEL" "$@"
    ;;
  streamer)
    worker streamer stream "$@"
    ;;
  collector)
    worker collector collect "$@"
    ;;
  migrate)
    run python manage.py migrate --noinput "$@"
    ;;
  collectstatic)
    run python manage.py collectstatic --noinput "$@"
    ;;
  check)
    run python manage.py check --deploy "$@"
    ;;
  add-source)
    wait_for_migrations
    run python manage.py add_source "$@"
    ;;
  manage)
    run python manage.py "$@"
    ;;
  celery)
    run celery -A telemetry_project "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    run "$role" "$@"
    ;;
esac
